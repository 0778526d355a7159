"""The measurements shaped like agents (left out of ``--quick``): long streamed replies, a growing session.

- ``chunks``: streamed replies of 20 and 200 chunks on one keep-alive connection; the CPU of each process
  per chunk (the slope between the two) and per turn (the intercept), against the bare simulator.
- ``agent``: a fresh gateway; a Claude Code request (the captured one) grows by the reply and a 2.5 KB
  tool result per turn, to ``agent_turns`` turns; each process's CPU for every turn.
Per-turn CPU is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds on a CPU), summed over threads.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.cpu import CpuProbe, task_cpu_ns
from bench.http_client import HttpConnection
from bench.lingma_client import LingmaClient
from bench.stack import Gateway, Simulator

__all__ = ("agent_session", "chunk_series")

CAPTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "captures" / "claude_code_p_tool_result.json"
TOOL_RESULT = (
    "drwxr-xr-x  2 dev dev  4096 Dec  7 03:12 module_{n:03d}.py  # a listing line of an agent's tool\n" * 33
)[:2500]
CHUNK_SIZES = (20, 200)


def _ms(values: list[float]) -> float:
    return round(statistics.fmean(values), 3) if values else 0.0


def _gaps(started: float, arrivals: list[float]) -> tuple[float, float]:
    """Time to the first byte and the worst gap between arrivals, in milliseconds."""
    if not arrivals:
        return 0.0, 0.0
    points = [started, *arrivals]
    return (arrivals[0] - started) * 1000, max(b - a for a, b in itertools.pairwise(points)) * 1000


async def _gateway_turns(gw: Gateway, chunks: int, turns: int) -> tuple[dict[str, float], list[float], list[float]]:
    conn = HttpConnection("127.0.0.1", gw.port)
    content = f"BENCH-C{chunks}"
    body = json.dumps({"model": "auto", "stream": True, "messages": [{"role": "user", "content": content}]}).encode()
    ttft: list[float] = []
    gaps: list[float] = []
    try:
        for _ in range(5):
            await conn.post("/v1/chat/completions", body)
        probe = CpuProbe(gw.pids)
        probe.start()
        for _ in range(turns):
            arrivals: list[float] = []
            started = time.perf_counter()
            response = await conn.post("/v1/chat/completions", body, arrivals)
            if response.status != 200 or f"w{chunks - 1:03d}".encode() not in response.body:
                raise RuntimeError(f"bad streamed reply: {response.status} {response.body[-200:]!r}")
            first, worst = _gaps(started, arrivals)
            ttft.append(first)
            gaps.append(worst)
        used = probe.stop()
    finally:
        await conn.close()
    return {k: v * 1000 / turns for k, v in used.items() if k != "other"}, ttft, gaps


async def _baseline_turns(sim: Simulator, chunks: int, turns: int) -> tuple[dict[str, float], list[float], list[float]]:
    client = await LingmaClient.open(sim.url)
    ttft: list[float] = []
    gaps: list[float] = []
    try:
        for _ in range(5):
            await client.ask(f"BENCH-C{chunks}")
        probe = CpuProbe({"simulator": sim.pid})
        probe.start()
        for _ in range(turns):
            arrivals: list[float] = []
            started = time.perf_counter()
            await client.ask(f"BENCH-C{chunks}", arrivals)
            first, worst = _gaps(started, arrivals)
            ttft.append(first)
            gaps.append(worst)
        used = probe.stop()
    finally:
        await client.close()
    return {k: v * 1000 / turns for k, v in used.items() if k != "other"}, ttft, gaps


def _fit(per_turn: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Slope (µs per chunk) and intercept (ms per turn) through the two reply lengths, per process."""
    small, large = CHUNK_SIZES
    out: dict[str, dict[str, float]] = {}
    for name in per_turn[small]:
        slope_ms = (per_turn[large][name] - per_turn[small][name]) / (large - small)
        out[name] = {
            "us_per_chunk": round(slope_ms * 1000, 1),
            "ms_per_turn": round(per_turn[small][name] - small * slope_ms, 3),
        }
    return out


async def chunk_series(sim: Simulator, gw: Gateway, turns: int = 60) -> dict[str, Any]:
    """Per process: CPU per chunk and per turn; TTFT and worst inter-chunk gap; all against the bare simulator."""
    gateway: dict[int, dict[str, float]] = {}
    baseline: dict[int, dict[str, float]] = {}
    latency: dict[str, Any] = {}
    for chunks in CHUNK_SIZES:
        n = turns if chunks == CHUNK_SIZES[0] else max(10, turns // 3)
        baseline[chunks], b_ttft, b_gap = await _baseline_turns(sim, chunks, n)
        gateway[chunks], g_ttft, g_gap = await _gateway_turns(gw, chunks, n)
        latency[str(chunks)] = {
            "turns": n,
            "ttft_p50_ms": round(statistics.median(g_ttft), 3),
            "worst_gap_p50_ms": round(statistics.median(g_gap), 3),
            "baseline_ttft_p50_ms": round(statistics.median(b_ttft), 3),
            "baseline_worst_gap_p50_ms": round(statistics.median(b_gap), 3),
        }
        latency[str(chunks)]["ttft_ratio"] = round(
            latency[str(chunks)]["ttft_p50_ms"] / max(1e-6, latency[str(chunks)]["baseline_ttft_p50_ms"]), 2
        )
    fit = _fit(gateway)
    base = _fit(baseline)["simulator"]
    served = {
        "us_per_chunk": round(sum(v["us_per_chunk"] for k, v in fit.items() if k != "loadgen"), 1),
        "ms_per_turn": round(sum(v["ms_per_turn"] for k, v in fit.items() if k != "loadgen"), 3),
    }
    return {
        "processes": fit,
        "baseline_simulator": base,
        "ratio": {
            "us_per_chunk": round(served["us_per_chunk"] / base["us_per_chunk"], 2)
            if base["us_per_chunk"] > 0
            else None,
            "ms_per_turn": round(served["ms_per_turn"] / base["ms_per_turn"], 2) if base["ms_per_turn"] > 0 else None,
        },
        "latency": latency,
        "ms_per_turn_raw": {str(k): {n: round(v, 3) for n, v in d.items()} for k, d in gateway.items()},
    }


def agent_first_body() -> dict[str, Any]:
    """The captured Claude Code request, non-streamed, with the marker that picks the simulator's agent reply."""
    capture = json.loads(CAPTURE.read_text())
    body = {k: v for k, v in capture["body"].items() if not k.startswith("_")}
    body["stream"] = False
    last = body["messages"][-1]
    last["content"] = [*last["content"], {"type": "text", "text": "BENCH-AGENT"}]
    return body


def _tool_use_id(reply: dict[str, Any]) -> str:
    for block in reply.get("content", []):
        if block.get("type") == "tool_use":
            return str(block["id"])
    raise RuntimeError(f"no tool_use in the reply: {json.dumps(reply)[:300]}")


def _window(series: list[dict[str, float]], first: int, last: int) -> dict[str, float]:
    rows = series[first - 1 : last]
    return {name: _ms([row[name] for row in rows]) for name in rows[0]} if rows else {}


async def agent_session(sim: Simulator, gw: Gateway, turns: int) -> dict[str, Any]:
    """``gw`` must be fresh (no request yet): turn 1 is the first request after start."""
    body = agent_first_body()
    conn = HttpConnection("127.0.0.1", gw.port)
    series: list[dict[str, float]] = []
    sizes: list[int] = []
    try:
        for turn in range(1, turns + 1):
            raw = json.dumps(body).encode()
            sizes.append(len(raw))
            before = {name: task_cpu_ns(pid) for name, pid in gw.pids.items()}
            response = await conn.post("/v1/messages", raw)
            after = {name: task_cpu_ns(pid) for name, pid in gw.pids.items()}
            if response.status != 200:
                raise RuntimeError(f"turn {turn}: HTTP {response.status}: {response.body[:300]!r}")
            series.append({name: (after[name] - before[name]) / 1e6 for name in gw.pids})
            reply = json.loads(response.body)
            tool_id = _tool_use_id(reply)
            body["messages"].append({"role": "assistant", "content": reply["content"]})
            result = TOOL_RESULT + f" BENCH-AGENT {turn}"
            body["messages"].append(
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": result}]}
            )
    finally:
        await conn.close()
    client = await LingmaClient.open(sim.url)
    base: list[float] = []
    try:
        for turn in range(1, 31):
            before_ns = task_cpu_ns(sim.pid)
            await client.ask(TOOL_RESULT + f" BENCH-AGENT {turn}")
            base.append((task_cpu_ns(sim.pid) - before_ns) / 1e6)
    finally:
        await client.close()
    base_ms = _ms(base[5:])
    marks = {str(t): {k: round(v, 3) for k, v in series[t - 1].items()} for t in (1, 2, 10, 50, 100, 200) if t <= turns}
    around = {str(t): _window(series, max(1, t - 4), t) for t in (10, 50, 100, 200) if t <= turns}
    early, late = _window(series, 6, 15), _window(series, 141, 150)
    return {
        "turns": turns,
        "body_bytes": {str(t): sizes[t - 1] for t in (1, 2, 10, 50, 100, 150, 200) if t <= turns},
        "ms_at_turn": marks,
        "ms_mean_of_5_ending_at": around,
        "ms_mean_6_15": early,
        "ms_mean_141_150": late,
        "late_over_early_sidecar": round(late["sidecar"] / early["sidecar"], 2) if late and early else None,
        "first_over_second_sidecar": round(series[0]["sidecar"] / series[1]["sidecar"], 2)
        if turns > 1 and series[1]["sidecar"]
        else None,
        "baseline_simulator_ms_per_turn": base_ms,
        "sidecar_ratio_6_15": round(early["sidecar"] / base_ms, 2) if early and base_ms else None,
        "sidecar_ratio_141_150": round(late["sidecar"] / base_ms, 2) if late and base_ms else None,
        "series": [{k: round(v, 3) for k, v in row.items()} for row in series],
    }
