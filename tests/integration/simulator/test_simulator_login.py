"""The login pieces: ``login/generateUrl`` and the HTTP login page and callback on ``--httpPort``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import urllib.error
import urllib.parse
import urllib.request

from .conftest import SimFactory


def _get(url: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, data=data, timeout=10) as response:
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, url, exc.read().decode()


async def get(url: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
    """GET ``url``, or POST ``form`` to it (urlencoded), following redirects."""
    return await asyncio.to_thread(_get, url, form)


def _state(login_url: str) -> str:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(login_url).query))["state"]


async def test_generate_url_shape(sims: SimFactory) -> None:
    sim = sims(LINGMA_SIM_LOGGED_OUT="1")
    client = await sim.connect()
    result = await client.result("login/generateUrl", {"loginDedicatedType": ""})
    url = urllib.parse.urlsplit(result["loginUrl"])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert (url.scheme, url.netloc, url.path) == ("http", f"127.0.0.1:{sim.http_port}", "/lingma/login")
    assert query["nonce"] == query["state"] == result["nonce"]
    assert len(result["nonce"]) == 32
    assert query["port"] == str(sim.http_port)
    assert query["challenge"] == result["challenge"]
    assert query["challenge_method"] == result["challengeMethod"] == "S256"
    assert query["machine_id"] == (sim.work_dir / "cache" / "id").read_text()
    digest = base64.urlsafe_b64encode(hashlib.sha256(result["verifier"].encode()).digest()).rstrip(b"=").decode()
    assert result["challenge"] == digest
    assert (result["success"], result["errorCode"], result["errorMsg"]) == (True, "", "")


async def test_browser_login_flow(sims: SimFactory) -> None:
    scenario = {"login": {"start_logged_out": True, "accounts": {"dev@example.com": "s3cret"}}}
    sim = sims(scenario=scenario)
    client = await sim.connect()
    login_url = (await client.result("login/generateUrl", {}))["loginUrl"]
    status, _, page = await get(login_url)
    assert status == 200
    assert "id='username'" in page
    assert "id='password'" in page
    state = _state(login_url)
    submit = f"http://127.0.0.1:{sim.http_port}/lingma/submit"
    assert (await get(submit, {"state": state, "username": "dev@example.com", "password": "nope"}))[0] == 401
    assert (await client.result("auth/status"))["status"] == 1
    right = {"state": state, "username": "dev@example.com", "password": "s3cret"}
    query = urllib.parse.urlencode(right)
    assert (await get(f"{submit}?{query}"))[0] == 405, "a password never travels in a query string"
    status, final_url, page = await get(submit, right)
    assert status == 200
    assert "/auth/callback?" in final_url
    assert "Login successful" in page
    auth = await client.result("auth/status")
    assert (auth["status"], auth["name"]) == (2, "dev@example.com")
    assert (await client.result("config/queryModels"))["chat"]
    replay = await get(final_url)
    assert replay[0] == 400, "the nonce is one-shot"


async def test_callback_with_unknown_state_is_refused(sims: SimFactory) -> None:
    sim = sims(LINGMA_SIM_LOGGED_OUT="1")
    client = await sim.connect()
    query = urllib.parse.urlencode({"state": "0" * 32, "auth": "a", "token": "t"})
    status, _, _ = await get(f"http://127.0.0.1:{sim.http_port}/auth/callback?{query}")
    assert status == 400
    assert (await client.result("auth/status"))["status"] == 1


async def test_redirect_chain_second_step_and_expiry(sims: SimFactory) -> None:
    login = {"start_logged_out": True, "redirects": 3, "second_step": True, "expire_after_ms": 1500,
             "accounts": {"dev@example.com": "s3cret"}}  # fmt: skip
    sim = sims(scenario={"login": login})
    client = await sim.connect()
    login_url = (await client.result("login/generateUrl", {}))["loginUrl"]
    status, landed, page = await get(login_url)
    assert status == 200 and "/account/login.htm?" in landed, "three hops end on the sign-in form"
    assert [e for e in sim_http_paths(sim) if e.startswith("/account/hop")] == ["/account/hop"] * 3
    form = {"state": _state(login_url), "username": "dev@example.com", "password": "s3cret"}
    status, _, page = await get(f"http://127.0.0.1:{sim.http_port}/lingma/submit", form)
    assert status == 200 and "id='second-step'" in page
    assert (await client.result("auth/status"))["status"] == 1, "not logged in before the second step"
    ticket = page.split("name='ticket' value='")[1].split("'")[0]
    status, final_url, page = await get(f"http://127.0.0.1:{sim.http_port}/lingma/confirm", {"ticket": ticket})
    assert status == 200 and "/auth/callback?" in final_url and "Login successful" in page
    assert (await client.result("auth/status"))["status"] == 2
    deadline = asyncio.get_running_loop().time() + 10
    while (await client.result("auth/status"))["status"] == 2:
        assert asyncio.get_running_loop().time() < deadline, "the first login never expired"
        await asyncio.sleep(0.1)
    assert (await client.result("auth/status"))["status"] == 3, "an expired login reads LOGIN_EXPIRED"


async def test_captcha_page_has_no_password_form(sims: SimFactory) -> None:
    sim = sims(scenario={"login": {"start_logged_out": True, "captcha": True}})
    client = await sim.connect()
    login_url = (await client.result("login/generateUrl", {}))["loginUrl"]
    status, _, page = await get(login_url)
    assert status == 200 and "id='captcha'" in page and "type='password'" not in page
    form = {"state": _state(login_url), "username": "dev@example.com", "password": "s3cret"}
    await get(f"http://127.0.0.1:{sim.http_port}/lingma/submit", form)
    assert (await client.result("auth/status"))["status"] == 1


def sim_http_paths(sim: object) -> list[str]:
    log = (sim.work_dir / "logs" / "lingma.log").read_text()  # type: ignore[attr-defined]
    return [line.split("http GET ", 1)[1].strip() for line in log.splitlines() if "http GET " in line]
