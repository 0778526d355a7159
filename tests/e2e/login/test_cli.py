"""``lingma-gateway login`` and ``lingma-gateway bundle``, run as real commands against real gateways and data dirs."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.lingma.conftest import free_port_pair
from tests.support.gateway import gateway_command

from .conftest import ADMIN, KEY, LoginGateway, assert_no_secrets, need_browser

pytestmark = pytest.mark.e2e

PASSWORD = "cli-pw-5Hq!r8"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _cli(gw: LoginGateway, *args: str, stdin: str = "", env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    out = subprocess.run(
        [*gateway_command(), *args, "--socket", str(gw.socket), "--data-dir", str(gw.data)],
        input=stdin, capture_output=True, text=True, timeout=timeout, env={**gw.env, **(env or {})},
    )  # fmt: skip
    (gw.root / f"cli-{len(list(gw.root.glob('cli-*')))}.out").write_text(out.stdout + out.stderr)
    return out


def test_login_command_drives_the_browser_and_requests_meanwhile_get_no_capacity(login_gateways: Any) -> None:
    need_browser()
    # The callback takes 6 s: long enough to send a request while the login runs.
    login = {"start_logged_out": True, "redirects": 2, "delay_ms": 6000, "accounts": {"c@example.com": PASSWORD}}
    env = {"LINGMA_ACCOUNTS": json.dumps([{"name": "acct-1", "username": "c@example.com", "password": PASSWORD}]),
           "AUTO_LOGIN_ENABLED": "false"}  # fmt: skip
    gw: LoginGateway = login_gateways(scenario={"login": login}, env=env)
    gw.wait_state("acct-1", "login_required", timeout=30)
    r = gw.chat()
    assert r.status_code == 503
    assert "acct-1 is logged out and auto-login is off: run `lingma-gateway login`" in r.json()["error"]["message"]
    proc = subprocess.Popen(
        [*gateway_command(), "login", "--instance", "acct-1", "--socket", str(gw.socket)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=gw.env,
    )  # fmt: skip
    try:
        gw.wait_state("acct-1", "logging_in", timeout=30)
        began = time.monotonic()
        r = gw.chat()
        assert r.status_code == 503 and time.monotonic() - began < 4, "a request never waits for the 6 s login"
        assert "acct-1 is logging in, attempt 1 of 2" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    (gw.root / "cli-login.out").write_text(out)
    assert proc.returncode == 0, out
    assert "acct-1 is logged in" in out
    assert "page step: credentials" in out and "s]" in out, "steps with elapsed times"
    assert gw.state("acct-1") == "ready"
    assert gw.chat().status_code == 200
    again = _cli(gw, "login", "--instance", "acct-1")
    assert again.returncode == 0 and "already logged in" in again.stdout
    assert_no_secrets(gw.gateway_logs(), [PASSWORD, ADMIN, KEY])


def test_login_without_a_browser_prints_the_url_and_takes_the_pasted_callback(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(scenario={"login": {"start_logged_out": True}})
    gw.wait_state("inst-0", "login_required", timeout=30)
    proc = subprocess.Popen(
        [*gateway_command(), "login", "--socket", str(gw.socket)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=gw.env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    lines = []
    while not (lines and lines[-1].startswith("If the browser cannot reach it")):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    text = "".join(lines)
    url = next(line.strip() for line in lines if "/lingma/login?" in line)
    port = urllib.parse.urlsplit(url).port
    assert f"ssh -L {port}:127.0.0.1:{port}" in text
    # A person's browser elsewhere: it signs in, but the callback never reaches the gateway host.
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["state"]
    form = urllib.parse.urlencode({"state": state, "username": "far@example.com", "password": "x"}).encode()
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
    try:
        opener.open(f"http://127.0.0.1:{port}/lingma/submit", data=form, timeout=10)
        raise AssertionError("expected the redirect to the callback")
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        callback = f"http://127.0.0.1:{port}" + exc.headers["Location"]
    assert gw.state("inst-0") == "login_required"
    out, _ = proc.communicate(callback + "\n", timeout=60)
    assert proc.returncode == 0, text + out
    assert "inst-0 is logged in" in out
    assert gw.state("inst-0") == "ready"


def test_bundle_commands_move_a_login_between_data_dirs(login_gateways: Any, short_dir: Path) -> None:
    source: LoginGateway = login_gateways(wait="ready")
    uid = source.stats()["inst-0"]["auth"]["id"]
    bundle_file = short_dir / "b.txt"
    done = _cli(source, "bundle", "export", "--instance", "inst-0", "--out", str(bundle_file))
    assert done.returncode == 0, done.stderr
    assert oct(bundle_file.stat().st_mode & 0o777) == "0o600"
    bundle = bundle_file.read_text().strip()
    assert bundle not in done.stdout + done.stderr
    source.stop()

    # No gateway runs on the target data dir: the command works on the files.
    target = LoginGateway(short_dir / "t", scenario={"login": {"start_logged_out": True}},
                          env={"API_KEYS": KEY, "ADMIN_TOKEN": ADMIN, "AUTO_LOGIN_ENABLED": "false",
                               "LINGMA_SOCKET_PORT": str(free_port_pair())})  # fmt: skip
    refused = _cli(target, "bundle", "import", str(short_dir / "missing.txt"), "--instance", "inst-0")
    assert refused.returncode != 0
    (short_dir / "bad.txt").write_text("not a bundle at all")
    bad = _cli(target, "bundle", "import", str(short_dir / "bad.txt"), "--instance", "inst-0")
    assert bad.returncode == 1 and "session bundle for inst-0 refused: it is not base64" in bad.stderr
    assert not (target.work("inst-0") / "cache" / "user").exists()
    done = _cli(target, "bundle", "import", str(bundle_file), "--instance", "inst-0")
    assert done.returncode == 0, done.stderr
    try:
        target.start()
        target.wait_ready()
        assert target.stats()["inst-0"]["auth"]["id"] == uid
        assert "login/generateUrl" not in target.methods("inst-0")
    finally:
        target.stop()
    assert_no_secrets(source.gateway_logs() + target.gateway_logs(), [bundle, ADMIN, KEY])


def test_login_command_with_no_gateway_logs_a_data_dir_in(login_gateways: Any, short_dir: Path) -> None:
    need_browser()
    sim = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "lingma-sim"
    gw = LoginGateway(short_dir / "offline", scenario={"login": {"start_logged_out": True, "second_step": True}},
                      env={"LINGMA_ACCOUNTS": json.dumps([{"name": "acct-1", "username": "o@example.com",
                                                           "password": PASSWORD}])})  # fmt: skip
    gw.env["LINGMA_SOCKET_PORT"] = str(free_port_pair())  # never the default pair other gateways start from
    gw.env["LINGMA_BIN"] = str(sim) if sim.exists() else str(Path(gateway_command()[0]).with_name("lingma-sim"))
    done = _cli(gw, "login", "--instance", "acct-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "acct-1 is logged in" in done.stdout
    assert (gw.work("acct-1") / "cache" / "user").exists()
    assert not any(p.name == "lingma.pid" for p in gw.work("acct-1").iterdir()), "its Lingma was stopped"
    assert PASSWORD not in done.stdout + done.stderr
