"""``/status`` on a real gateway: who gets in, how, and what a refused request looks like."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import Gateway

TOKEN = "admin-token-for-status"


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    root = Path(tempfile.mkdtemp(prefix="lgw-st-", dir="/tmp"))
    scenario = {"turns": [{"match": "walrus-boom", "reply": [{"error": {"status": 500, "kind": "server", "message": "upstream failed"}}]}]}  # fmt: skip
    gateway = Gateway(root, env={"ADMIN_TOKEN": TOKEN, "API_KEYS": "client-key"}, scenario=scenario).start()
    yield gateway
    gateway.stop()
    shutil.rmtree(root, ignore_errors=True)


def _signed_in(gw: Gateway) -> httpx.Client:
    client = httpx.Client(base_url=gw.url, timeout=10)
    r = client.post("/status/session", data={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/status"
    return client


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_without_the_cookie_the_page_is_a_login_form(gw: Gateway) -> None:
    r = httpx.get(gw.url + "/status")
    assert r.status_code == 401
    assert '<form method="post" action="/status/session">' in r.text and 'type="password"' in r.text
    assert "inst-0" not in r.text


def test_a_bearer_header_alone_does_not_open_the_page(gw: Gateway) -> None:
    r = httpx.get(gw.url + "/status", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 401 and "inst-0" not in r.text


@pytest.mark.parametrize("query", [f"token={TOKEN}", f"admin_token={TOKEN}", f"access_token={TOKEN}", "x=1"])
def test_a_query_string_is_refused(gw: Gateway, query: str) -> None:
    r = httpx.get(f"{gw.url}/status?{query}")
    assert r.status_code == 400 and "never goes in a URL" in r.text
    posted = httpx.post(f"{gw.url}/status/session?{query}", data={"token": TOKEN})
    assert posted.status_code == 400 and "set-cookie" not in posted.headers
    assert TOKEN not in r.text + posted.text
    signed_in = _signed_in(gw)
    assert signed_in.get(f"/status?{query}").status_code == 400


def test_a_wrong_token_gets_no_cookie(gw: Gateway) -> None:
    r = httpx.post(gw.url + "/status/session", data={"token": "client-key-guess"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert "not accepted" in r.text and "client-key-guess" not in r.text
    forged = httpx.get(gw.url + "/status", cookies={"lingma_status": "99999999999.deadbeef"})
    assert forged.status_code == 401


def test_the_token_buys_an_httponly_strict_cookie_and_the_page(gw: Gateway) -> None:
    client = _signed_in(gw)
    cookie = client.cookies.jar
    raw = httpx.post(gw.url + "/status/session", data={"token": TOKEN}).headers["set-cookie"]
    assert "HttpOnly" in raw and "SameSite=strict" in raw.replace("Strict", "strict") and "Path=/status" in raw
    assert TOKEN not in raw
    assert any(c.name == "lingma_status" for c in cookie)
    r = client.get("/status")
    assert r.status_code == 200
    assert "<script" not in r.text and "http://" not in r.text.replace(gw.url, "") and "https://" not in r.text
    assert '<meta http-equiv="refresh"' in r.text
    assert "<code>inst-0</code>" in r.text and ">ready<" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_the_page_shows_traffic_after_turns(gw: Gateway) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "status page traffic"}]}
    headers = {"authorization": "Bearer client-key"}
    first = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=30).json()
    follow = {**body, "messages": [*body["messages"], first["choices"][0]["message"], {"role": "user", "content": "again"}]}  # fmt: skip
    assert httpx.post(gw.url + "/v1/chat/completions", json=follow, headers=headers, timeout=30).status_code == 200
    boom = {"model": "auto", "messages": [{"role": "user", "content": "walrus-boom"}]}
    assert httpx.post(gw.url + "/v1/chat/completions", json=boom, headers=headers, timeout=30).status_code == 502
    text = _signed_in(gw).get("/status").text
    assert "hit rate</td><td>" in text and "% (" in text  # a follow-up was looked up in the cache
    recent = text[text.index("Recent failures") : text.index("Failures since start")]
    assert "<td>upstream_error</td><td>1</td>" in recent
    assert "<td>2</td>" in text[text.index("<code>inst-0</code>") :].split("</tr>")[0]  # served


def test_starting_a_login_needs_the_csrf_token(gw: Gateway) -> None:
    client = _signed_in(gw)
    csrf = _csrf(client.get("/status").text)
    assert client.post("/status/instances/inst-0/login").status_code == 403
    assert client.post("/status/instances/inst-0/login", data={"csrf": "0" * 64}).status_code == 403
    assert client.post("/status/instances/inst-0/login", data={"csrf": csrf[:-1] + "x"}).status_code == 403
    r = client.post("/status/instances/inst-0/login", data={"csrf": csrf})
    assert r.status_code == 200 and "inst-0: already logged in." in r.text  # the admin login operation answered
    assert client.post("/status/instances/nobody/login", data={"csrf": csrf}).status_code == 404
    cross = client.post(
        "/status/instances/inst-0/login", data={"csrf": csrf}, headers={"origin": "http://evil.example"}
    )
    assert cross.status_code == 403


def test_without_a_cookie_a_post_is_refused(gw: Gateway) -> None:
    r = httpx.post(gw.url + "/status/instances/inst-0/login", data={"csrf": "x"})
    assert r.status_code == 401


def test_signing_out_needs_csrf_and_clears_the_cookie(gw: Gateway) -> None:
    client = _signed_in(gw)
    assert client.post("/status/logout").status_code == 403
    csrf = _csrf(client.get("/status").text)
    r = client.post("/status/logout", data={"csrf": csrf})
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]


def test_an_open_gateway_has_no_status_page(short_dir: Path) -> None:
    gw = Gateway(short_dir / "open", env={"ADMIN_TOKEN": "", "API_KEYS": ""}).start()
    try:
        r = httpx.get(gw.url + "/status")
        assert r.status_code == 404 and "ADMIN_TOKEN" in r.text
    finally:
        gw.stop()
