"""Start-up time, idle RSS, and many concurrent open streams (left out of ``--quick``).

- ``startup``: from spawning ``serve`` to its first valid completion (polled every 10 ms), then idle RSS;
  the baseline is the bare simulator, spawned to its first answered ``chat/ask``.
- ``open_streams``: ``count`` slow streams at once (the scenario pauses between chunks, the gateway sends
  heartbeats meanwhile); peak RSS of each process and the worst gap between arrivals on any stream. The
  benchmark raises its soft ``RLIMIT_NOFILE`` to the hard limit first, and the processes it starts inherit it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cpu import rss_kib
from bench.http_client import HttpConnection
from bench.lingma_client import LingmaClient
from bench.procs import Processes, StartupError
from bench.stack import Gateway, Simulator, free_port, gateway_command, sidecar_pid, sim_command, simulator_pid

__all__ = ("nofile_needed", "open_streams", "raise_nofile", "startup")

PING = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "ping"}]}).encode()


def nofile_needed(streams: int) -> int:
    """Descriptors the open-streams phase needs in its busiest process (serve: the client's socket and its
    sidecar connection per stream), with room for everything else."""
    return 2 * streams + 256


def raise_nofile(need: int) -> tuple[int, int]:
    """Soft ``RLIMIT_NOFILE`` up to the hard limit, and both up to ``need`` when allowed (root may raise the
    hard limit); returns (soft, hard) after. The processes the benchmark starts inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            soft, hard = need, need
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def _until(check: Callable[[], Any], timeout_s: float, child_alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child_alive():
            raise StartupError("exited during start-up")
        with contextlib.suppress(Exception):
            if await check():
                return
        await asyncio.sleep(0.01)
    raise StartupError(f"no valid completion within {timeout_s:.0f}s")


async def startup(procs: Processes, data_dir: Path, env: dict[str, str], sim_dir: Path) -> dict[str, Any]:
    port = free_port()
    argv = [*gateway_command(), "serve", "--simulator", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), "--socket", str(data_dir.parent / "startup.sock")]
    started = time.perf_counter()
    child = procs.spawn("startup-serve", argv, env)
    conn = HttpConnection("127.0.0.1", port)

    async def valid() -> bool:
        response = await conn.post("/v1/chat/completions", PING)
        return response.status == 200 and b'"finish_reason":"stop"' in response.body

    try:
        await _until(valid, 60.0, child.alive)
        gateway_s = time.perf_counter() - started
        await asyncio.sleep(1.0)
    finally:
        await conn.close()
    sim_pid = simulator_pid(Path(env["LINGMA_WORK_DIR"]), child.pid)
    pids = {"http": child.pid, "sidecar": sidecar_pid(child.pid, sim_pid), "simulator": sim_pid}
    idle = {name: round(rss_kib(pid) / 1024, 1) for name, pid in pids.items()}

    ws_port = free_port()
    sim_argv = [*sim_command(), "start", f"--workDir={sim_dir}", f"--socketPort={ws_port}", f"--httpPort={free_port()}"]
    started = time.perf_counter()
    sim_child = procs.spawn("startup-sim", sim_argv, env)

    async def answered() -> bool:
        client = await LingmaClient.open(f"ws://127.0.0.1:{ws_port}/")
        try:
            return bool(await client.ask("ping"))
        finally:
            await client.close()

    await _until(answered, 60.0, sim_child.alive)
    base_s = time.perf_counter() - started
    await asyncio.sleep(1.0)
    base_rss = round(rss_kib(sim_child.pid) / 1024, 1)
    return {
        "to_first_completion_s": round(gateway_s, 3),
        "baseline_to_first_answer_s": round(base_s, 3),
        "ratio": round(gateway_s / base_s, 2) if base_s > 0 else None,
        "idle_rss_mib": idle,
        "baseline_idle_rss_mib": base_rss,
        "rss_ratio": round((idle["http"] + idle["sidecar"]) / base_rss, 2) if base_rss else None,
    }


class _Peak:
    """Samples the RSS of named processes every 100 ms; keeps each one's peak and the peak of their sum."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self.peak_sum = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = {name: rss_kib(pid) for name, pid in self.pids.items()}
            for name, value in now.items():
                self.peak[name] = max(self.peak[name], value)
            self.peak_sum = max(self.peak_sum, sum(now.values()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)


_ERRORS: list[str] = []


def _timing(started: float, arrivals: list[float]) -> tuple[float, float]:
    """Time to the first byte, and the worst gap between bytes after it (heartbeats count as bytes)."""
    if not arrivals:
        return time.perf_counter() - started, 0.0
    return arrivals[0] - started, max((b - a for a, b in itertools.pairwise(arrivals)), default=0.0)


async def _gateway_stream(port: int, body: bytes) -> tuple[bool, float, float]:
    conn = HttpConnection("127.0.0.1", port)
    arrivals: list[float] = []
    started = time.perf_counter()
    try:
        response = await conn.post("/v1/chat/completions", body, arrivals)
        ok = response.status == 200 and response.body.rstrip().endswith(b"data: [DONE]") and b"done" in response.body
        if not ok and len(_ERRORS) < 5:
            _ERRORS.append(f"HTTP {response.status}: {response.body[-300:]!r}")
    except Exception as exc:  # noqa: BLE001 - counted as an error
        ok = False
        if len(_ERRORS) < 5:
            _ERRORS.append(f"{type(exc).__name__}: {exc}"[:300])
    finally:
        await conn.close()
    return ok, *_timing(started, arrivals)


async def _baseline_stream(url: str) -> tuple[bool, float, float]:
    arrivals: list[float] = []
    started = time.perf_counter()
    try:
        client = await LingmaClient.open(url)
        try:
            ok = "done" in await client.ask("BENCH-SLOW", arrivals)
        finally:
            await client.close()
    except Exception:  # noqa: BLE001 - counted as an error
        ok = False
    return ok, *_timing(started, arrivals)


@dataclass
class _Wave:
    errors: int
    ttfb_ms: list[float]
    """Each stream's time to its first byte, sorted."""
    worst_gap_ms: float
    peak_mib: dict[str, float]
    wall_s: float

    def ttfb(self, share: float) -> float:
        return round(self.ttfb_ms[min(len(self.ttfb_ms) - 1, int(share * len(self.ttfb_ms)))], 1)


async def _wave(jobs: list[Any], pids: dict[str, int]) -> _Wave:
    peak = _Peak(pids)
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(peak.run(stop))
    started = time.perf_counter()
    results = await asyncio.gather(*jobs)
    wall = time.perf_counter() - started
    stop.set()
    await sampler
    return _Wave(
        errors=sum(1 for ok, _, _ in results if not ok),
        ttfb_ms=sorted(first * 1000 for _, first, _ in results),
        worst_gap_ms=round(max(gap for _, _, gap in results) * 1000, 1),
        peak_mib={k: round(v / 1024, 1) for k, v in peak.peak.items()},
        wall_s=round(wall, 2),
    )


async def open_streams(sim: Simulator, gw: Gateway, count: int, heartbeat_s: float) -> dict[str, Any]:
    """``gw`` must allow ``count`` turns in flight and send heartbeats every ``heartbeat_s``.

    All streams are sent at once. The worst gap is between bytes of a stream once its first byte came (the
    heartbeats' job); the time to the first byte is reported apart: a stream commits, and sends its first
    byte, when its first content or its first heartbeat is due, so it holds the time the burst of starts
    queued in the gateway plus one heartbeat interval.
    """
    body = json.dumps({"model": "auto", "stream": True, "messages": [{"role": "user", "content": "BENCH-SLOW"}]})
    g = await _wave([_gateway_stream(gw.port, body.encode()) for _ in range(count)], gw.pids)
    b = await _wave([_baseline_stream(sim.url) for _ in range(count)], {"simulator": sim.pid})
    served = g.peak_mib["http"] + g.peak_mib["sidecar"]
    return {
        "streams": count,
        "heartbeat_s": heartbeat_s,
        "errors": g.errors,
        "error_samples": list(_ERRORS),
        "worst_gap_ms": g.worst_gap_ms,
        "ttfb_p50_ms": g.ttfb(0.5),
        "ttfb_max_ms": g.ttfb(1.0),
        "peak_rss_mib": g.peak_mib,
        "peak_rss_serve_plus_sidecar_mib": round(served, 1),
        "wall_s": g.wall_s,
        "baseline_errors": b.errors,
        "baseline_worst_gap_ms": b.worst_gap_ms,
        "baseline_ttfb_p50_ms": b.ttfb(0.5),
        "baseline_ttfb_max_ms": b.ttfb(1.0),
        "baseline_peak_rss_mib": b.peak_mib["simulator"],
        "baseline_wall_s": b.wall_s,
        "rss_ratio": round(served / b.peak_mib["simulator"], 2) if b.peak_mib["simulator"] else None,
        "ttfb_max_ratio": round(g.ttfb(1.0) / b.ttfb(1.0), 2) if b.ttfb(1.0) else None,
    }
