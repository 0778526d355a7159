"""``/docs`` and ``/status`` in real headless Chromium, inside a namespace where only loopback exists.

Every asset must come from the gateway itself (nothing else is reachable), the rendered text must show the
routes and the instances, and a screenshot of each page is kept under ``.artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import free_port
from tests.support.clients.netns import run_in_netns, unshare_works
from tests.support.gateway import gateway_command

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / ".artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "status-page-admin-token"


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (scripts/system-deps installs it)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def rendered() -> Any:
    _need(CHROMIUM.exists(), "needs /usr/bin/chromium")
    _need(unshare_works(), "needs unshare -n and ip for a loopback-only namespace")
    root = Path(tempfile.mkdtemp(prefix="lgw-pages-", dir="/tmp"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    accounts = json.dumps([{"username": "alice", "password": "", "name": "alice"}, {"username": "bob", "password": "", "name": "bob"}])  # fmt: skip
    actions = [
        {"do": "open", "url": url + "/docs"},
        {"do": "wait", "js": "document.body.innerText.includes('/v1/chat/completions')"},
        {"do": "read", "as": "docs"},
        {"do": "screenshot", "path": str(ARTIFACTS / "docs.png")},
        {"do": "open", "url": url + "/status"},
        {"do": "read", "as": "status_signed_out"},
        {"do": "type", "selector": "input[name=token]", "text": TOKEN},
        {"do": "submit", "selector": "form[action='/status/session']"},
        {"do": "wait", "js": "document.body.innerText.includes('Instances')"},
        {"do": "read", "as": "status"},
        {"do": "screenshot", "path": str(ARTIFACTS / "status.png")},
    ]
    (root / "browser.json").write_text(json.dumps({"actions": actions}))
    spec = {
        "servers": [
            {
                "cmd": [*gateway_command(), "serve", "--simulator", "--port", str(port), "--data-dir", str(root / "data"),
                        "--socket", str(root / "s.sock")],
                "log": str(root / "serve.log"),
                "env": {"ADMIN_TOKEN": TOKEN, "LINGMA_ACCOUNTS": accounts},
                "drop_env": ["API_KEYS", "LINGMA_SIM_", "GATEWAY_", "ADMIN_TOKEN"],
            }
        ],
        "ready_url": url + "/readyz",
        "steps": [
            {"name": "browser", "cmd": [sys.executable,
                                        "-m", "tests.support.browser", str(root / "browser.json")],
             "cwd": str(ROOT), "timeout": 180}
        ],
    }  # fmt: skip
    result = run_in_netns(spec, root, timeout=300)
    log = (root / "serve.log").read_text(errors="replace") if (root / "serve.log").exists() else ""
    assert "setup_failed" not in result, f"{result['setup_failed']}\n{log[-4000:]}"
    step = result["steps"]["browser"]
    assert step["returncode"] == 0, f"{step['stderr'][-4000:]}\n{log[-3000:]}"
    yield {"port": port, **json.loads(step["stdout"].strip().splitlines()[-1])}
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(400)
def test_docs_render_every_route_offline(rendered: dict[str, Any]) -> None:
    text = rendered["docs"]["text"]
    for route in ("/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/healthz", "/metrics"):  # fmt: skip
        assert route in text, f"{route} missing from the rendered /docs:\n{text[:3000]}"
    assert "lingma-gateway" in text
    assert (ARTIFACTS / "docs.png").stat().st_size > 10_000


def test_pages_load_nothing_from_elsewhere(rendered: dict[str, Any]) -> None:
    hosts = {urlsplit(u).netloc for u in rendered["requested"] if u.startswith("http")}
    assert hosts == {f"127.0.0.1:{rendered['port']}"}, hosts
    assert rendered["console"] == []


def test_status_signs_in_through_the_form_and_shows_instances(rendered: dict[str, Any]) -> None:
    assert "Admin token" in rendered["status_signed_out"]["text"]
    text = rendered["status"]["text"]
    assert rendered["status"]["url"].endswith("/status")
    for ident in ("alice", "bob"):
        assert ident in text
    assert "ready" in text or "login_required" in text
    for heading in ("Backpressure", "Session cache", "Tool-call recognition", "Recent failures"):
        assert heading in text
    assert (ARTIFACTS / "status.png").stat().st_size > 5_000
