"""The closed-loop load: N workers, each with its own connection, issuing requests back to back.

A measurement is a warm-up (connections opened, caches filled, not timed) then a fixed number of
timed requests, bounded by a wall-clock limit so a stuck gateway cannot hang the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bench.http_client import HttpConnection
from bench.lingma_client import LingmaClient

__all__ = ("BaselineWorker", "GatewayWorker", "LoadResult", "Worker", "percentile", "run_load")

PROMPT = "ping"
_ERROR_SAMPLES = 5


class Worker(Protocol):
    async def call(self) -> None:
        """One request, end to end; raises if the answer is not a complete success."""

    async def reset(self) -> None:
        """Drop the connection after a failure; the next call opens a new one."""


class GatewayWorker:
    """POST /v1/chat/completions, non-streaming or streaming, checking the reply finished with ``stop``."""

    def __init__(self, port: int, *, stream: bool) -> None:
        self._conn = HttpConnection("127.0.0.1", port)
        self._stream = stream
        body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
        self._body = json.dumps(body).encode()

    async def call(self) -> None:
        response = await self._conn.post("/v1/chat/completions", self._body)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.body[:200]!r}")
        if b'"finish_reason":"stop"' not in response.body or (
            self._stream and not response.body.rstrip().endswith(b"data: [DONE]")
        ):
            raise RuntimeError(f"incomplete reply: {response.body[-200:]!r}")

    async def reset(self) -> None:
        await self._conn.close()


class BaselineWorker:
    """One ``chat/ask`` on a WebSocket straight to the simulator."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: LingmaClient | None = None

    async def call(self) -> None:
        if self._client is None:
            self._client = await LingmaClient.open(self._url)
        if not await self._client.ask(PROMPT):
            raise RuntimeError("empty answer")

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                await client.close()


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_ms:
        return 0.0
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


@dataclass
class LoadResult:
    requests: int
    errors: int
    wall_s: float
    truncated: bool
    latencies_ms: list[float] = field(repr=False)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, float | int | bool | list[str]]:
        ordered = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 3),
            "truncated": self.truncated,
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(ordered, 0.50), 3),
            "p99_ms": round(percentile(ordered, 0.99), 3),
            "error_samples": self.error_samples,
        }


async def _phase(workers: list[Worker], count: int, limit_s: float, timeout_s: float) -> LoadResult:
    remaining = count
    deadline = time.monotonic() + limit_s
    result = LoadResult(0, 0, 0.0, False, [])

    async def loop(worker: Worker) -> None:
        nonlocal remaining
        while remaining > 0:
            if time.monotonic() >= deadline:
                result.truncated = True
                return
            remaining -= 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    await worker.call()
            except Exception as exc:  # noqa: BLE001 - any failure is counted, shown, and the load goes on
                result.errors += 1
                if len(result.error_samples) < _ERROR_SAMPLES:
                    result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                await worker.reset()
            else:
                result.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                result.requests += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(worker) for worker in workers))
    result.wall_s = time.perf_counter() - started
    return result


async def run_load(
    make: Callable[[], Worker],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    limit_s: float,
    timeout_s: float,
    on_start: Callable[[], None] = lambda: None,
) -> LoadResult:
    """Warm up, call ``on_start``, then time ``requests`` requests across ``concurrency`` workers."""
    workers = [make() for _ in range(concurrency)]
    try:
        await _phase(workers, warmup, limit_s, timeout_s)
        on_start()
        return await _phase(workers, requests, limit_s, timeout_s)
    finally:
        for worker in workers:
            await worker.reset()
