"""Every README snippet fenced as ``test`` runs against a live gateway, exactly as printed but for the port.

A fence's info string is ``<language> test [needs=<client>]``. The gateway is the one ``scripts/serve`` runs
(bundled, with the simulator, open), on a free port: ``127.0.0.1:8787`` in a snippet becomes
``127.0.0.1:<port>``, nothing else changes. Each must exit 0 and print the simulator's answer. Snippets that
need Claude Code or Codex run in a loopback-only namespace with the pinned npm client first on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.support.clients.install import CLAUDE_CODE, CODEX, NpmClient
from tests.support.clients.netns import client_or_skip, run_in_netns
from tests.support.gateway import Gateway, gateway_command

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
PRINTED = "127.0.0.1:8787"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)
SIM_ANSWER = "sim: turn"
CLIENTS: dict[str, NpmClient] = {"claude": CLAUDE_CODE, "codex": CODEX}
# What the harness sets around a client snippet (never in the snippet): no telemetry, updates or retries.
CLIENT_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}


@dataclass(frozen=True)
class Snippet:
    language: str
    needs: str | None
    body: str
    line: int

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.language}" + (f":{self.needs}" if self.needs else "")


def tagged_snippets(text: str) -> list[Snippet]:
    found = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if "test" not in words[1:]:
            continue
        needs = next((w.removeprefix("needs=") for w in words if w.startswith("needs=")), None)
        found.append(Snippet(words[0], needs, match["body"], text.count("\n", 0, match.start()) + 1))
    return found


SNIPPETS = tagged_snippets(README.read_text())
LOCAL = [s for s in SNIPPETS if s.needs is None]
WITH_CLIENT = [s for s in SNIPPETS if s.needs is not None]


def _command(snippet: Snippet, port: int) -> list[str]:
    code = snippet.body.replace(PRINTED, f"127.0.0.1:{port}")
    if snippet.language == "python":
        return [sys.executable, "-c", code]
    assert snippet.language == "bash", snippet.name
    return ["bash", "-eo", "pipefail", "-c", code]


def test_the_quick_start_covers_every_client() -> None:
    text = "\n".join(s.body for s in SNIPPETS)
    for needle in ("curl ", "chat.completions.create", "responses.create", "messages.create", "claude -p", "codex exec"):  # fmt: skip
        assert needle in text, f"no tagged README snippet uses {needle!r}"
    assert {s.needs for s in WITH_CLIENT} == set(CLIENTS)
    for snippet in SNIPPETS:
        assert PRINTED in snippet.body, f"{snippet.name} does not talk to the printed address"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    root = Path(tempfile.mkdtemp(prefix="lgw-readme-", dir="/tmp"))
    env = dict.fromkeys(("API_KEYS", "ADMIN_TOKEN", "METRICS_TOKEN"), "")
    gw = Gateway(root, env=env).start()
    yield gw
    gw.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("snippet", LOCAL, ids=[s.name for s in LOCAL])
def test_snippet_runs_against_the_gateway(snippet: Snippet, gateway: Gateway) -> None:
    done = subprocess.run(
        _command(snippet, gateway.port), capture_output=True, text=True, timeout=120, check=False, cwd=gateway.root
    )
    assert done.returncode == 0, f"{snippet.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert SIM_ANSWER in done.stdout, f"{snippet.name} printed no answer:\n{done.stdout[-2000:]}"


@pytest.mark.timeout(1200)  # a first run installs the npm client
@pytest.mark.parametrize("snippet", WITH_CLIENT, ids=[s.name for s in WITH_CLIENT])
def test_client_snippet_runs_against_the_gateway(snippet: Snippet) -> None:
    assert snippet.needs is not None
    binary = client_or_skip(CLIENTS[snippet.needs], snippet.needs)
    root = Path(tempfile.mkdtemp(prefix="lgw-readme-cli-", dir="/tmp"))
    try:
        port = free_port()
        for name in ("home", "work"):
            (root / name).mkdir()
        serve = [*gateway_command(), "serve", "--simulator", "--port", str(port)]
        serve += ["--data-dir", str(root / "data"), "--socket", str(root / "s.sock")]
        path = f"{binary.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        spec: dict[str, Any] = {
            "servers": [
                {
                    "cmd": serve,
                    "log": str(root / "serve.log"),
                    "drop_env": ["API_KEYS", "ADMIN_TOKEN", "GATEWAY_", "LINGMA_SIM_"],
                }
            ],
            "ready_url": f"http://127.0.0.1:{port}/readyz",
            "steps": [
                {
                    "name": "snippet",
                    "cmd": _command(snippet, port),
                    "env": {"HOME": str(root / "home"), "PATH": path, **CLIENT_ENV},
                    "drop_env": ["ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_"],
                    "cwd": str(root / "work"),
                    "timeout": 180.0,
                }
            ],
        }
        result = run_in_netns(spec, root, timeout=600)
        log = (root / "serve.log").read_text(errors="replace") if (root / "serve.log").exists() else ""
        assert "setup_failed" not in result, f"{result['setup_failed']}\n{log[-3000:]}"
        step = result["steps"]["snippet"]
        described = f"exit {step['returncode']}\nstdout:\n{step['stdout'][-3000:]}\nstderr:\n{step['stderr'][-3000:]}"
        assert step["returncode"] == 0, described
        assert SIM_ANSWER in step["stdout"], described
    finally:
        shutil.rmtree(root, ignore_errors=True)
