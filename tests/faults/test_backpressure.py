"""Honest backpressure: one queue wait with one deadline, and size-bound work that never stalls the sidecar."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.settings import load_settings
from tests.support.gateway import Gateway

SLOW = {"turns": [{"match": "slow", "reply": [{"text": "working "}, {"delay_ms": 4000}, {"text": "done"}]}]}


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    kwargs: dict[str, Any] = request.param
    root = Path("/tmp") / f"lgw-bp-{tmp_path.name[-12:]}"
    gw = Gateway(root, **kwargs).start()
    yield gw
    gw.stop()


def test_the_per_instance_default_is_the_global_limit() -> None:
    assert load_settings({}).instance_limit == 32
    assert load_settings({"GATEWAY_MAX_IN_FLIGHT": "10"}).instance_limit == 10
    assert load_settings({"GATEWAY_MAX_IN_FLIGHT": "10", "GATEWAY_INSTANCE_MAX_IN_FLIGHT": "4"}).instance_limit == 4


async def _stream(port: int, n: int, connected: asyncio.Queue[int], go: asyncio.Event) -> tuple[int, float, str | None]:
    """One streamed turn over a bare connection (an SDK's own overhead would blur the timing at 60 at once).

    The clock starts when the request has been written, and stops at the response head.
    """
    body = json.dumps({"model": "auto", "stream": True, "messages": [{"role": "user", "content": f"slow {n}"}]})
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connected.put_nowait(n)
    await go.wait()
    writer.write(head.encode() + body.encode())
    await writer.drain()
    started = time.monotonic()
    response_head = await reader.readuntil(b"\r\n\r\n")
    elapsed = time.monotonic() - started
    await reader.read()  # the rest of the answer: a served stream holds its slot until it ends
    writer.close()
    lines = response_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, elapsed, {k.lower(): v for k, v in headers.items()}.get("retry-after")


@pytest.mark.parametrize("gateway", [{"scenario": SLOW, "env": {"GATEWAY_QUEUE_TIMEOUT_SEC": "2"}}], indirect=True)
async def test_sixty_streams_on_one_instance_get_their_429_within_the_queue_timeout(gateway: Gateway) -> None:
    go, connected = asyncio.Event(), asyncio.Queue[int]()
    tasks = [asyncio.ensure_future(_stream(gateway.port, n, connected, go)) for n in range(60)]
    for _ in range(60):  # every connection is open before the first request goes out
        await asyncio.wait_for(connected.get(), 10)
    go.set()
    results = await asyncio.gather(*tasks)
    statuses = sorted(status for status, _, _ in results)
    refused = [(elapsed, retry) for status, elapsed, retry in results if status == 429]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses.count(200) == 32, statuses  # one instance serves the whole global limit
    assert len(refused) == 28, statuses
    assert all(retry is not None and int(retry) >= 1 for _, retry in refused), refused
    times = sorted(round(elapsed, 2) for elapsed, _ in refused)
    assert times[-1] < 2.5, f"a 429 took too long: {times}"
    assert times[0] > 1.8, times  # it did wait for a slot first


def _big_count_body(megabytes: int) -> dict[str, Any]:
    words = "the quick brown fox jumps over the lazy dog while counting tokens of a large request; "
    text = words * (megabytes * 1024 * 1024 // len(words))
    return {"model": "claude-x", "messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("gateway", [{"env": {"ADMIN_TOKEN": "adm"}}], indirect=True)
async def test_token_counting_of_huge_bodies_does_not_stall_ordinary_requests(gateway: Gateway) -> None:
    big = _big_count_body(15)
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "none"}
    ordinary = {"model": "auto", "messages": [{"role": "user", "content": "just a question"}]}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as counter,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        counts = [asyncio.ensure_future(counter.post("/v1/messages/count_tokens", json=big, headers=headers))
                  for _ in range(2)]  # fmt: skip

        async def one() -> tuple[int, float]:
            started = time.monotonic()
            r = await client.post("/v1/chat/completions", json=ordinary)
            return r.status_code, time.monotonic() - started

        # Wait until the counting is under way: both bodies are in and the sidecar is working on them.
        deadline = time.monotonic() + 20
        stats = {"authorization": "Bearer adm"}
        while not _counting(await client.get("/internal/stats", headers=stats)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*(one() for _ in range(10)))
        overlapped = not all(c.done() for c in counts)
        answers = await asyncio.gather(*counts)
    assert [r.status_code for r in answers] == [200, 200]
    assert all(r.json()["input_tokens"] > 1_000_000 for r in answers)
    assert overlapped, "the counting ended before the ordinary requests: the test proved nothing"
    assert [status for status, _ in results] == [200] * 10, results
    assert max(took for _, took in results) < 3.0, results


def _counting(r: httpx.Response) -> bool:
    """Whether the sidecar has begun a count_tokens call (the stats count it as it starts)."""
    if r.status_code != 200:
        return False
    return int(r.json().get("requests", {}).get("count_tokens", 0)) >= 1
