"""``python -m bench``: start the processes, run the measurements, print the table, write the JSON.

Everything started is stopped on the way out, whether the run ends, fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from bench.config import SIM_SCENARIO, Config, gateway_env, parse_args, sim_env, sim_root
from bench.measure import measure_all, progress
from bench.procs import Processes, StartupError
from bench.report import render_cpu, render_extended, render_table, write_json
from bench.stack import Gateway, Simulator, bundled_available, start_gateway, start_simulator
from bench.suite import measure_extended

__all__ = ("main",)

T = TypeVar("T")


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop when available, as the gateway itself runs: the load generator must stay cheap."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _payload(
    cfg: Config,
    sim: Simulator,
    gw: Gateway,
    sims: Path,
    rows: list[dict[str, Any]],
    started: float,
    extended: dict[str, Any] | None,
) -> dict[str, Any]:
    """``machine.loadavg`` and each row's ``other_cores`` say how busy the rest of the box was."""
    return {
        "version": 1,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "config": {
            "requests": cfg.requests,
            "runs": cfg.runs,
            "concurrency": list(cfg.concurrency),
            "scenarios": list(cfg.scenarios),
            "warmup": {str(c): cfg.warmup_for(c) for c in cfg.concurrency},
            "quick": cfg.quick,
            "mode": gw.mode,
            "max_in_flight": cfg.max_in_flight,
            "simulator_quirks": cfg.quirks,
            "simulator_journal": cfg.journal,
            "simulator_work_dirs": str(sims),
            "simulator_scenario": SIM_SCENARIO,
            "ratio_basis": "median over runs of gateway/baseline measured back to back",
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
        | {"loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "processes": {"gateway": gw.pids, "baseline_simulator": sim.pid},
        "results": rows,
        "extended": extended,
    }


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.time()
    root = Path(tempfile.mkdtemp(prefix="lgb-", dir="/tmp"))
    procs = Processes(root)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    sims = root
    extended: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    try:
        sims = sim_root(cfg, root)
        bundled = cfg.mode == "serve" or (cfg.mode == "auto" and bundled_available())
        scenario = root / "scenario.json"
        scenario.write_text(json.dumps(SIM_SCENARIO))
        env = sim_env(cfg, scenario)
        sim = start_simulator(procs, sims / "base" / "inst-b", env)
        gw = start_gateway(procs, root / "d", root / "s.sock", gateway_env(cfg, env, sims / "gw"), bundled=bundled)
        progress(f"gateway ({gw.mode}) on 127.0.0.1:{gw.port}, pids {gw.pids}; baseline simulator pid {sim.pid}")
        if cfg.classic:
            rows = _run_async(measure_all(cfg, sim, gw))
        if cfg.extended:
            extended = _run_async(measure_extended(cfg, sim, gw, root, env))
    except StartupError as exc:
        print(f"bench: start-up failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; stopping the processes", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if cfg.keep:
            print(f"bench: kept {root} and {sims}", file=sys.stderr)
        else:
            shutil.rmtree(sims, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
    write_json(cfg.out, _payload(cfg, sim, gw, sims, rows, started, extended))
    print(render_table(rows))
    print()
    print(render_cpu(rows))
    if extended is not None:
        print()
        print(render_extended(extended))
    print(f"\nmode {gw.mode}; ratios are gateway/baseline; results in {cfg.out}")
    errors = sum(row["gateway"]["errors"] + row["baseline"]["errors"] for row in rows)
    errors += extended["streams"]["errors"] if extended and "streams" in extended else 0
    if errors:
        print(f"bench: {errors} request(s) failed; see error_samples in the JSON", file=sys.stderr)
        return 1
    return 0
