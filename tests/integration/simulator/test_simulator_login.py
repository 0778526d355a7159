"""The login pieces: ``login/generateUrl`` and the HTTP login page and callback on ``--httpPort``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import urllib.error
import urllib.parse
import urllib.request

from .conftest import SimFactory


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.geturl(), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, url, exc.read().decode()


async def get(url: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(_get, url)


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
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(login_url).query))["state"]
    base = f"http://127.0.0.1:{sim.http_port}/lingma/submit?"
    wrong = base + urllib.parse.urlencode({"state": state, "username": "dev@example.com", "password": "nope"})
    assert (await get(wrong))[0] == 401
    assert (await client.result("auth/status"))["status"] == 1
    right = base + urllib.parse.urlencode({"state": state, "username": "dev@example.com", "password": "s3cret"})
    status, final_url, page = await get(right)
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
