"""Auto-login through real headless Chromium (Debian's) and the simulator's login page."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for

from .conftest import ADMIN, ADMIN_HEADERS, KEY, LoginGateway, assert_no_secrets, need_browser

pytestmark = pytest.mark.e2e

PASSWORD = "pw-Q7!x2#Lk9"
DEDICATED = "https://lingma.corp.example/algo"


def accounts(*entries: dict[str, str]) -> str:
    return json.dumps(list(entries))


def sim_bundle(machine_id: str, name: str, uid: str) -> str:
    """A bundle in the simulator's own format: cache/user is base64 JSON naming the cache/id it belongs to."""
    user = {"machine_id": machine_id, "uid": uid, "aid": uid, "name": name, "security_oauth_token": f"pt-{uid}",
            "refresh_token": f"rt-{uid}", "expire_time": int(time.time() * 1000) + 86_400_000}  # fmt: skip
    files = {"cache/id": machine_id.encode(), "cache/user": base64.b64encode(json.dumps(user).encode())}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def test_auto_login_with_redirects_second_step_and_dedicated_domain(login_gateways: Any) -> None:
    need_browser()
    login = {"start_logged_out": True, "redirects": 3, "second_step": True,
             "accounts": {"a1@example.com": PASSWORD, "a2@example.com": PASSWORD}}  # fmt: skip
    env = {
        "LINGMA_ACCOUNTS": accounts(
            {"name": "acct-1", "username": "a1@example.com", "password": PASSWORD},
            {"name": "acct-2", "username": "a2@example.com", "password": PASSWORD},
        ),
        "DEDICATED_DOMAIN_URL": DEDICATED,
        "AUTO_LOGIN_TIMEOUT": "60",
    }
    gw: LoginGateway = login_gateways(scenario={"login": login}, env=env, wait="none")
    # acct-2's Lingma already points at the dedicated domain: no update may be sent for it.
    (gw.work("acct-2") / "cache").mkdir(parents=True)
    (gw.work("acct-2") / "cache" / "endpoint.json").write_text(json.dumps({"endpoint": DEDICATED}))
    gw.wait_up()
    gw.wait_state("acct-1", "ready", timeout=90)
    gw.wait_state("acct-2", "ready", timeout=90)
    r = gw.chat("after the login")
    assert r.status_code == 200, r.text
    first = gw.methods("acct-1")
    assert "config/updateEndpoint" in first
    assert first.index("config/getEndpoint") < first.index("config/updateEndpoint") < first.index("login/generateUrl")
    second = gw.methods("acct-2")
    assert "config/getEndpoint" in second and "config/updateEndpoint" not in second
    assert second.index("config/getEndpoint") < second.index("login/generateUrl")
    status = httpx.get(gw.url + "/internal/auto-login/status", headers=ADMIN_HEADERS, timeout=10).json()
    by_id = {i["instance"]: i for i in status["instances"]}
    assert by_id["acct-1"]["auto_login"]["state"] == "succeeded"
    assert by_id["acct-1"]["auth"]["name"] == "a1@example.com"
    assert by_id["acct-2"]["auth"]["name"] == "a2@example.com"
    assert_no_secrets(gw.gateway_logs() + json.dumps(status), [PASSWORD, ADMIN, KEY, "pt-", "rt-"])


def test_wrong_password_is_retried_then_login_failed_and_requests_start_nothing(login_gateways: Any) -> None:
    need_browser()
    env = {
        "LINGMA_ACCOUNTS": accounts(
            {"name": "acct-1", "username": "a1@example.com", "password": "not-the-password"},
            {
                "name": "acct-2",
                "username": "a2@example.com",
                "password": PASSWORD,
                "session_bundle": sim_bundle("machine-two", "a2@example.com", "5550000000000002"),
            },
        ),
        "AUTO_LOGIN_MAX_RETRY": "2",
        "AUTO_LOGIN_TIMEOUT": "60",
    }
    login = {"start_logged_out": True, "accounts": {"a1@example.com": PASSWORD}}
    gw: LoginGateway = login_gateways(scenario={"login": login}, env=env)
    gw.wait_state("acct-1", "login_failed", timeout=90)
    record = gw.stats()["acct-1"]["auto_login"]
    assert record["attempts"] == 2 and record["state"] == "failed"
    assert "wrong username or password" in record["last_error"]
    assert record["finished_at"] - record["started_at"] >= 1.0, "a backoff separates the attempts"
    assert gw.methods("acct-1").count("login/generateUrl") == 2
    assert "login/generateUrl" not in gw.methods("acct-2"), "acct-2 came in with its bundle"
    for n in range(50):
        assert gw.chat(f"request {n}").status_code == 200
    assert gw.methods("acct-1").count("login/generateUrl") == 2, "requests never start a login"
    assert gw.state("acct-1") == "login_failed"
    # Only an admin starts the next attempt.
    r = httpx.post(gw.url + "/internal/auto-login/start?instance=acct-1", headers=ADMIN_HEADERS, timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "running"
    wait_for(lambda: gw.methods("acct-1").count("login/generateUrl") == 3, 30, what="the admin's attempt")
    assert_no_secrets(gw.gateway_logs(), ["not-the-password", PASSWORD, ADMIN, KEY])


def test_captcha_fails_once_and_names_the_way_out(login_gateways: Any) -> None:
    need_browser()
    env = {
        "LINGMA_ACCOUNTS": accounts({"name": "acct-1", "username": "a1@example.com", "password": PASSWORD}),
        "AUTO_LOGIN_MAX_RETRY": "3",
    }
    login = {"start_logged_out": True, "captcha": True, "redirects": 2}
    gw: LoginGateway = login_gateways(scenario={"login": login}, env=env)
    gw.wait_state("acct-1", "login_failed", timeout=90)
    record = gw.stats()["acct-1"]["auto_login"]
    assert record["attempts"] == 1, "a page that needs a person is not retried"
    assert "--show-browser" in record["last_error"] and "bundle" in record["last_error"]
    began = time.monotonic()
    r = gw.chat()
    assert r.status_code == 503 and time.monotonic() - began < 2
    message = r.json()["error"]["message"]
    assert "acct-1: login failed (the login page asks for a person (captcha)" in message
    assert "an admin must start a new login" in message
    assert int(r.headers["retry-after"]) >= 1
    assert_no_secrets(gw.gateway_logs(), [PASSWORD, ADMIN, KEY])


def test_login_expiry_leaves_the_rotation_and_logs_in_again(login_gateways: Any) -> None:
    need_browser()
    env = {"LINGMA_ACCOUNTS": accounts({"name": "acct-1", "username": "a1@example.com", "password": PASSWORD})}
    login = {"expire_after_ms": 3000, "accounts": {"a1@example.com": PASSWORD}}
    gw: LoginGateway = login_gateways(scenario={"login": login}, env=env, wait="ready")
    assert "login/generateUrl" not in gw.methods("acct-1"), "it started logged in"
    gw.wait_state("acct-1", "login_required", "logging_in", timeout=20)
    gw.wait_state("acct-1", "ready", timeout=60)
    assert gw.methods("acct-1").count("login/generateUrl") == 1
    stats = gw.stats()["acct-1"]
    assert stats["restarts_total"] == 0 and stats["auth"]["name"] == "a1@example.com"
    assert gw.chat().status_code == 200


def test_auto_login_without_a_browser_says_so_at_start(login_gateways: Any) -> None:
    env = {
        "LINGMA_ACCOUNTS": accounts({"name": "acct-1", "username": "a1@example.com", "password": PASSWORD}),
        "AUTO_LOGIN_BROWSER": "/nonexistent/chromium",
    }
    gw: LoginGateway = login_gateways(scenario={"login": {"start_logged_out": True}}, env=env)
    gw.wait_state("acct-1", "login_required", timeout=30)
    assert "auto-login is on but cannot run: no Chromium was found (AUTO_LOGIN_BROWSER=/nonexistent/chromium)" in (
        gw.gateway_logs()
    )
    r = gw.chat()
    assert r.status_code == 503 and "acct-1 is logged out and auto-login cannot run" in r.json()["error"]["message"]
    assert "login/generateUrl" not in gw.methods("acct-1")
    assert_no_secrets(gw.gateway_logs(), [PASSWORD, ADMIN, KEY])
