"""Request bodies: the size limit counts decompressed bytes, gzip and zstd are undone, bad bodies are 400s."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import zstandard
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.testing import AsyncTestClient, TestClient

from handlers.body import read_body, read_json
from handlers.errors import openai_exception_handlers

LIMIT = 1000


class Shape(msgspec.Struct):
    name: str
    count: int = 0


@post("/raw", status_code=200)
async def raw(request: Request[object, object, State]) -> dict[str, Any]:
    body = await read_body(request, LIMIT)
    return {"size": len(body), "head": body[:20].decode(errors="replace")}


@post("/json", status_code=200)
async def typed(request: Request[object, object, State]) -> dict[str, Any]:
    value = await read_json(request, Shape, LIMIT)
    return {"name": value.name, "count": value.count}


APP = Litestar(route_handlers=[raw, typed], exception_handlers=openai_exception_handlers, request_max_body_size=None)


async def post_raw(content: bytes, **headers: str) -> Any:
    async with AsyncTestClient(APP) as client:
        return await client.post("/raw", content=content, headers=headers)


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


async def test_a_body_at_the_limit_passes_and_one_byte_more_is_413() -> None:
    assert (await post_raw(b"a" * LIMIT)).json()["size"] == LIMIT
    r = await post_raw(b"a" * (LIMIT + 1))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert str(LIMIT) in r.json()["error"]["message"]


def test_a_streamed_body_without_a_length_is_cut_at_the_limit() -> None:
    with TestClient(APP) as client:
        ok = client.post("/raw", content=chunks(LIMIT))
        one_more = client.post("/raw", content=chunks(LIMIT + 1))
        too_big = client.post("/raw", content=chunks(LIMIT * 50))
    assert "content-length" not in ok.request.headers
    assert ok.json()["size"] == LIMIT
    assert one_more.status_code == too_big.status_code == 413


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", " GZip "])
async def test_gzip_is_undone_whatever_its_spelling(encoding: str) -> None:
    r = await post_raw(gzip.compress(b"hello " * 100), **{"content-encoding": encoding})
    assert r.json() == {"size": 600, "head": "hello hello hello he"}


async def test_zstd_is_undone() -> None:
    r = await post_raw(zstandard.ZstdCompressor().compress(b"zz" * 300), **{"content-encoding": "zstd"})
    assert r.json()["size"] == 600


@pytest.mark.parametrize("pack", [gzip.compress, zstandard.ZstdCompressor().compress], ids=["gzip", "zstd"])
async def test_the_limit_applies_after_decompression(pack: Any) -> None:
    encoding = "gzip" if pack is gzip.compress else "zstd"
    at_limit = await post_raw(pack(b"a" * LIMIT), **{"content-encoding": encoding})
    bomb = pack(b"a" * (LIMIT * 100))
    assert len(bomb) < LIMIT
    over = await post_raw(bomb, **{"content-encoding": encoding})
    assert at_limit.json()["size"] == LIMIT
    assert over.status_code == 413
    assert "decompressed" in over.json()["error"]["message"]


@pytest.mark.parametrize(
    ("encoding", "content", "message"),
    [
        ("gzip", b"\x1f\x8b not really", "not valid gzip"),
        ("zstd", b"(\xb5/\xfd broken", "not valid zstd"),
        ("deflate", b"x", "unsupported Content-Encoding: deflate"),
    ],
)
async def test_a_body_that_cannot_be_decoded_is_400(encoding: str, content: bytes, message: str) -> None:
    r = await post_raw(content, **{"content-encoding": encoding})
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


async def test_identity_and_no_encoding_are_the_same() -> None:
    plain = await post_raw(b"same bytes")
    identity = await post_raw(b"same bytes", **{"content-encoding": "identity"})
    assert plain.json() == identity.json() == {"size": 10, "head": "same bytes"}


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b'{"name": "n", "count": 2}', 200, None),
        (b'{"name": "n"}', 200, None),
        (b"   \n", 400, "the request body is empty"),
        (b"{oops", 400, "not valid JSON"),
        (b'{"count": 2}', 400, "name"),
        (b'{"name": 5}', 400, "Expected `str`"),
    ],
)
async def test_json_is_decoded_into_its_type_or_refused(content: bytes, status: int, message: str | None) -> None:
    async with AsyncTestClient(APP) as client:
        r = await client.post("/json", content=content)
    assert r.status_code == status, r.text
    if message is None:
        assert r.json()["name"] == "n"
    else:
        assert message in r.json()["error"]["message"]
