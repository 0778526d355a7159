"""What every dialect does with bad callers: missing or wrong keys, oversized, compressed and broken bodies."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

import pytest
import zstandard

from .conftest import ANTHROPIC_AUTH, API_KEY, AUTH, gateway


@dataclass(frozen=True)
class Dialect:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    anthropic: bool

    def error_type(self, out: dict[str, Any]) -> str:
        if self.anthropic:
            assert out["type"] == "error" and set(out["error"]) == {"type", "message"}
            return str(out["error"]["type"])
        assert set(out["error"]) == {"message", "type", "param", "code"}
        return str(out["error"]["type"])


CHAT = Dialect(
    "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "TURN-TEXT"}]}, AUTH, False
)
RESPONSES = Dialect("/v1/responses", {"model": "m", "input": "TURN-TEXT"}, AUTH, False)
MESSAGES = Dialect(
    "/v1/messages",
    {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "TURN-TEXT"}]},
    ANTHROPIC_AUTH,
    True,
)
COUNT = Dialect(
    "/v1/messages/count_tokens", {"model": "m", "messages": [{"role": "user", "content": "a b"}]}, ANTHROPIC_AUTH, True
)
DIALECTS = [CHAT, RESPONSES, MESSAGES, COUNT]
IDS = ["chat", "responses", "messages", "count_tokens"]


def without_key(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("authorization", "x-api-key")}


def wrong_key(d: Dialect) -> dict[str, str]:
    key = {"x-api-key": "wrong"} if d.anthropic else {"authorization": "Bearer wrong"}
    return {**without_key(d.headers), **key}


@pytest.mark.parametrize("d", DIALECTS, ids=IDS)
async def test_a_missing_or_wrong_key_is_401_in_the_dialects_envelope(d: Dialect) -> None:
    async with gateway() as client:
        missing = await client.post(d.path, json=d.body, headers=without_key(d.headers))
        wrong = await client.post(d.path, json=d.body, headers=wrong_key(d))
        right = await client.post(d.path, json=d.body, headers=d.headers)
    assert missing.status_code == wrong.status_code == 401
    expected = "authentication_error" if d.anthropic else "invalid_request_error"
    assert d.error_type(missing.json()) == d.error_type(wrong.json()) == expected
    assert "wrong" not in wrong.text and API_KEY not in wrong.text
    assert right.status_code == 200


async def test_both_key_headers_are_accepted_by_every_dialect() -> None:
    async with gateway() as client:
        bearer = await client.post(MESSAGES.path, json=MESSAGES.body, headers={"authorization": f"Bearer {API_KEY}"})
        x_key = await client.post(CHAT.path, json=CHAT.body, headers={"x-api-key": API_KEY})
    assert bearer.status_code == x_key.status_code == 200


async def test_an_open_gateway_needs_no_key() -> None:
    async with gateway(api_keys=()) as client:
        r = await client.post(CHAT.path, json=CHAT.body)
    assert r.status_code == 200


@pytest.mark.parametrize("d", DIALECTS, ids=IDS)
async def test_a_body_over_the_limit_is_413(d: Dialect) -> None:
    big = {**d.body, "metadata_padding": "x" * 5000}
    async with gateway(gateway_max_body_bytes=4096) as client:
        r = await client.post(
            d.path, content=json.dumps(big).encode(), headers={**d.headers, "content-type": "application/json"}
        )
    assert r.status_code == 413
    expected = "request_too_large" if d.anthropic else "invalid_request_error"
    assert d.error_type(r.json()) == expected


@pytest.mark.parametrize("d", [CHAT, MESSAGES], ids=["chat", "messages"])
async def test_a_compressed_body_that_inflates_past_the_limit_is_413(d: Dialect) -> None:
    bomb = gzip.compress(json.dumps({**d.body, "pad": "a" * 200_000}).encode())
    assert len(bomb) < 4096
    headers = {**d.headers, "content-encoding": "gzip", "content-type": "application/json"}
    async with gateway(gateway_max_body_bytes=4096) as client:
        r = await client.post(d.path, content=bomb, headers=headers)
    assert r.status_code == 413


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "zstd", "identity"])
@pytest.mark.parametrize("d", [CHAT, RESPONSES, MESSAGES], ids=["chat", "responses", "messages"])
async def test_compressed_bodies_are_decompressed(d: Dialect, encoding: str) -> None:
    raw = json.dumps(d.body).encode()
    if encoding in ("gzip", "x-gzip"):
        raw = gzip.compress(raw)
    elif encoding == "zstd":
        raw = zstandard.ZstdCompressor().compress(raw)
    headers = {**d.headers, "content-encoding": encoding, "content-type": "application/json"}
    async with gateway() as client:
        r = await client.post(d.path, content=raw, headers=headers)
    assert r.status_code == 200, r.text
    assert "Hello there!" in r.text


@pytest.mark.parametrize(
    ("encoding", "raw", "message"),
    [
        ("gzip", b"not gzip at all", "not valid gzip"),
        ("zstd", b"not zstd at all", "not valid zstd"),
        ("br", b"{}", "unsupported Content-Encoding: br"),
    ],
)
async def test_a_body_that_does_not_decompress_is_400(encoding: str, raw: bytes, message: str) -> None:
    async with gateway() as client:
        r = await client.post(CHAT.path, content=raw, headers={**AUTH, "content-encoding": encoding})
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


@pytest.mark.parametrize("d", DIALECTS, ids=IDS)
@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"{not json", "not valid JSON"), (b"", "body is empty"), (b"[1, 2]", "invalid request")],
    ids=["broken", "empty", "wrong-shape"],
)
async def test_a_bad_body_is_400_in_the_dialects_envelope(d: Dialect, raw: bytes, message: str) -> None:
    async with gateway() as client:
        r = await client.post(d.path, content=raw, headers={**d.headers, "content-type": "application/json"})
    assert r.status_code == 400
    out = r.json()
    assert d.error_type(out) == "invalid_request_error"
    text = out["error"]["message"]
    assert message in text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("d", [CHAT, MESSAGES], ids=["chat", "messages"])
async def test_a_field_of_the_wrong_type_is_400_naming_it(d: Dialect) -> None:
    async with gateway() as client:
        r = await client.post(d.path, json={**d.body, "model": 7}, headers=d.headers)
    assert r.status_code == 400
    assert "model" in r.text
