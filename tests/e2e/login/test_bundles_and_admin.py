"""Session bundles between gateways, hand login, and the admin API's rules and answers (the predecessor's shapes)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.client import SidecarClient
from common.protocol import AdminResult, LoginUrl
from tests.conftest import wait_for

from .conftest import ADMIN, ADMIN_HEADERS, KEY, KEY_HEADERS, LoginGateway, assert_no_secrets

pytestmark = pytest.mark.e2e

LOGIN_METHODS = ("login/generateUrl", "auth/login", "login/auth_callback", "auth/device_login")


def _export(gw: LoginGateway, instance: str) -> httpx.Response:
    headers = {**ADMIN_HEADERS, "x-request-id": f"exp-{instance}"}
    return httpx.post(gw.url + f"/internal/session/export?instance={instance}", headers=headers, timeout=10)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bundle_round_trip_between_gateways(login_gateways: Any) -> None:
    three = json.dumps([{"name": f"acct-{n}", "username": f"u{n}@example.com"} for n in range(3)])
    source: LoginGateway = login_gateways(env={"LINGMA_ACCOUNTS": three}, wait="ready")
    wait_for(lambda: all(i["state"] == "ready" for i in source.stats().values()), 30, what="three ready instances")
    identities = {iid: s["auth"]["id"] for iid, s in source.stats().items()}
    assert len(set(identities.values())) == 3
    exported = {}
    for iid in identities:
        r = _export(source, iid)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"instance", "account", "raw_bytes", "bundle_b64"}
        assert (body["instance"], body["account"]) == (iid, f"u{iid[-1]}@example.com")
        assert body["raw_bytes"] == len(base64.b64decode(body["bundle_b64"]))
        exported[iid] = body["bundle_b64"]
    logs = source.gateway_logs()
    assert "session bundle of instance acct-0 exported (request id exp-acct-0)" in logs
    source.stop()

    # A fresh data dir whose Lingma starts logged out, with auto-login off: each bundle alone logs its instance in.
    # The first instance takes LINGMA_SESSION_BUNDLE, the others their account's session_bundle.
    with_bundles = json.dumps(
        [{"name": iid, "username": f"u{iid[-1]}@example.com"} | ({"session_bundle": b} if iid != "acct-0" else {})
         for iid, b in exported.items()]
    )  # fmt: skip
    target: LoginGateway = login_gateways(
        scenario={"login": {"start_logged_out": True}},
        env={
            "LINGMA_ACCOUNTS": with_bundles,
            "LINGMA_SESSION_BUNDLE": exported["acct-0"],
            "AUTO_LOGIN_ENABLED": "false",
        },
    )
    wait_for(lambda: all(i["state"] == "ready" for i in target.stats().values()), 30, what="imported logins")
    assert {iid: s["auth"]["id"] for iid, s in target.stats().items()} == identities
    for iid in identities:
        assert not set(target.methods(iid)) & set(LOGIN_METHODS), f"{iid} called a login method"
    assert target.chat("on an imported login").status_code == 200
    assert_no_secrets(source.gateway_logs() + target.gateway_logs(), [*exported.values(), ADMIN, KEY])
    for bundle in exported.values():
        assert bundle[:48] not in logs


def test_a_bad_bundle_names_the_account_and_leaves_the_work_dir(login_gateways: Any, short_dir: Path) -> None:
    secret_looking = base64.b64encode(b"\x1f\x8b" + b"not really gzip at all, secret-ish 9d8c7b").decode()
    env = {
        "LINGMA_ACCOUNTS": json.dumps(
            [{"name": "acct-9", "username": "u9@example.com", "session_bundle": secret_looking}]
        ),
        "AUTO_LOGIN_ENABLED": "false",
    }
    gw: LoginGateway = login_gateways(scenario={"login": {"start_logged_out": True}}, env=env, wait="none")
    work = gw.work("acct-9")
    (work / "cache").mkdir(parents=True)
    (work / "cache" / "id").write_text("kept-machine-id")
    before = _tree(work)
    gw.wait_up()
    gw.wait_state("acct-9", "login_required", timeout=30)
    logs = gw.gateway_logs()
    assert "session bundle for acct-9 refused: its gzip data is damaged" in logs
    assert secret_looking not in logs and "secret-ish" not in logs
    assert _tree(work)["cache/id"] == before["cache/id"]
    assert "cache/user" not in _tree(work)
    r = gw.chat()
    assert r.status_code == 503
    assert "acct-9 is logged out and auto-login is off: run `lingma-gateway login`" in r.json()["error"]["message"]


def test_hand_login_rejoins_within_the_probe_interval_without_restart(login_gateways: Any) -> None:
    login = {"start_logged_out": True, "redirects": 2}
    gw: LoginGateway = login_gateways(scenario={"login": login}, env={"AUTO_LOGIN_ENABLED": "false"})
    gw.wait_state("inst-0", "login_required", timeout=30)
    assert gw.chat().status_code == 503
    # A person signs in: the login URL comes from the running instance, the browser is urllib.
    result = asyncio.run(_admin(gw, LoginUrl(instance="inst-0")))
    assert result.status == 200
    login_url = json.loads(result.json)["login_url"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(login_url, timeout=10) as page:
        assert page.status == 200
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(login_url).query))["state"]
    port = urllib.parse.urlsplit(login_url).port
    form = urllib.parse.urlencode({"state": state, "username": "me@example.com", "password": "x"}).encode()
    with opener.open(f"http://127.0.0.1:{port}/lingma/submit", data=form, timeout=10) as page:
        assert "/auth/callback" in page.geturl()
    wait_for(lambda: gw.state("inst-0") == "ready", 5, 0.05, what="the hand login to be seen")
    stats = gw.stats()["inst-0"]
    assert stats["restarts_total"] == 0 and stats["auth"]["name"] == "me@example.com"
    assert gw.chat().status_code == 200


async def _admin(gw: LoginGateway, op: Any) -> AdminResult:
    client = SidecarClient(gw.socket)
    try:
        return await client.admin(op)
    finally:
        await client.aclose()


def test_admin_answers_keep_the_predecessors_shapes(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(
        scenario={"login": {"start_logged_out": True}}, env={"INSTANCE_COUNT": "2", "AUTO_LOGIN_ENABLED": "false"}
    )
    gw.wait_state("inst-1", "login_required", timeout=30)
    status = httpx.get(gw.url + "/internal/auto-login/status", headers=ADMIN_HEADERS, timeout=10)
    assert status.status_code == 200
    body = status.json()
    assert body["ok"] is True and [i["instance"] for i in body["instances"]] == ["inst-0", "inst-1"]
    for item in body["instances"]:
        assert set(item) == {"instance", "state", "auth", "auto_login"}
        assert {"state", "attempts", "last_error", "started_at", "finished_at"} <= set(item["auto_login"])
        assert item["state"] == "login_required"
        assert "token" not in item["auth"] and "refreshToken" not in item["auth"]
    r = _export(gw, "inst-0")
    assert r.status_code == 409 and r.json()["ok"] is False
    assert httpx.post(gw.url + "/internal/session/export?instance=nope", headers=ADMIN_HEADERS).status_code == 404
    r = httpx.post(gw.url + "/internal/auto-login/start?instance=nope", headers=ADMIN_HEADERS, timeout=10)
    assert r.status_code == 404
    r = httpx.post(gw.url + "/internal/auto-login/start", headers=ADMIN_HEADERS, timeout=10)
    assert r.status_code == 409 and r.json()["instance"] == "inst-0", "no credentials: refused, naming the instance"
    assert httpx.post(gw.url + "/internal/auto-login/start", headers=KEY_HEADERS).status_code == 401


def test_start_on_a_logged_in_instance_says_so(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(wait="ready")
    r = httpx.post(gw.url + "/internal/auto-login/start?instance=inst-0", headers=ADMIN_HEADERS, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"ok", "state", "instance", "auth"}
    assert (body["ok"], body["state"], body["instance"]) == (True, "already_logged_in", "inst-0")
    assert body["auth"]["id"] and "token" not in body["auth"]


def test_export_requires_the_admin_token_even_where_api_keys_open_internal(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(wait="ready", admin=False)
    assert httpx.get(gw.url + "/internal/stats", headers=KEY_HEADERS, timeout=10).status_code == 200
    r = httpx.post(gw.url + "/internal/session/export?instance=inst-0", headers=KEY_HEADERS, timeout=10)
    assert r.status_code == 403 and "ADMIN_TOKEN" in r.json()["error"]["message"]
    assert "bundle_b64" not in r.text


def test_without_keys_or_token_every_internal_route_is_404(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(wait="ready", admin=False, api_keys=False)
    for method, path in [("GET", "/internal/stats"), ("GET", "/internal/models/raw"),
                         ("GET", "/internal/auto-login/status"), ("POST", "/internal/auto-login/start"),
                         ("POST", "/internal/session/export?instance=inst-0")]:  # fmt: skip
        assert httpx.request(method, gw.url + path, timeout=10).status_code == 404, path
