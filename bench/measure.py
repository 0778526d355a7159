"""One measured pair: the baseline, then the gateway, at the same concurrency, with CPU read around each.

Each run measures the pairs back to back, so slow drift of a shared machine hits both sides of a ratio
alike; ``other`` CPU (the rest of the machine) is recorded so a noisy run can be recognised.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from bench.config import Config
from bench.cpu import CpuProbe, start_time
from bench.load import BaselineWorker, GatewayWorker, LoadResult, Worker, run_load
from bench.report import aggregate
from bench.stack import Gateway, Simulator

__all__ = ("measure_all", "progress")


def _per_request(seconds: dict[str, float], requests: int) -> dict[str, float]:
    return {name: round(s * 1000.0 / max(1, requests), 3) for name, s in seconds.items() if name != "other"}


def _cores(seconds: float, wall_s: float) -> float:
    return round(seconds / wall_s, 2) if wall_s > 0 else 0.0


async def _measure(
    cfg: Config, make: Callable[[], Worker], concurrency: int, probe: CpuProbe
) -> tuple[LoadResult, dict[str, float]]:
    result = await run_load(
        make,
        concurrency=concurrency,
        requests=cfg.requests,
        warmup=cfg.warmup_for(concurrency),
        limit_s=cfg.limit_s,
        timeout_s=cfg.timeout_s,
        on_start=probe.start,
    )
    return result, probe.stop()


async def _pair(cfg: Config, scenario: str, concurrency: int, sim: Simulator, gw: Gateway) -> dict[str, Any]:
    me = os.getpid()

    def baseline() -> Worker:
        return BaselineWorker(sim.url)

    def gateway() -> Worker:
        return GatewayWorker(gw.port, stream=scenario == "stream")

    base, base_cpu = await _measure(cfg, baseline, concurrency, CpuProbe({"simulator": sim.pid, "loadgen": me}))
    stamps = {pid: start_time(pid) for pid in gw.pids.values()}
    result, gw_cpu = await _measure(cfg, gateway, concurrency, CpuProbe(gw.pids | {"loadgen": me}))
    served = sum(gw_cpu[name] for name in gw.pids)
    return {
        "gateway": result.summary(),
        "baseline": base.summary(),
        "cpu": {
            "seconds": gw_cpu,
            "baseline_seconds": base_cpu,
            "simulator_share": round(gw_cpu["simulator"] / served, 3) if served > 0 else 0.0,
            "ms_per_request": _per_request(gw_cpu, result.requests),
            "baseline_ms_per_request": _per_request(base_cpu, base.requests),
            "other_cores": _cores(gw_cpu["other"], result.wall_s),
            "baseline_other_cores": _cores(base_cpu["other"], base.wall_s),
            "pids_stable": all(start_time(pid) == stamp for pid, stamp in stamps.items()),
        },
    }


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def measure_all(cfg: Config, sim: Simulator, gw: Gateway) -> list[dict[str, Any]]:
    keys = [(s, c) for s in cfg.scenarios for c in cfg.concurrency]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in keys}
    for n in range(1, cfg.runs + 1):
        for scenario, concurrency in keys:
            row = await _pair(cfg, scenario, concurrency, sim, gw)
            runs[(scenario, concurrency)].append(row)
            g, b = row["gateway"], row["baseline"]
            progress(
                f"[run {n}/{cfg.runs}] {scenario:>10} c={concurrency:<3} "
                f"baseline {b['rps']:8.1f} req/s p50 {b['p50_ms']:7.2f} p99 {b['p99_ms']:7.2f} | "
                f"gateway {g['rps']:8.1f} req/s p50 {g['p50_ms']:7.2f} p99 {g['p99_ms']:7.2f}"
                + (f" | ERRORS {g['errors']}+{b['errors']}" if g["errors"] or b["errors"] else "")
            )
    return [aggregate(s, c, runs[(s, c)]) for s, c in keys]
