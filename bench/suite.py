"""The extended measurements, each on the gateway it needs, in one run beside the classic table."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from pathlib import Path
from typing import Any

from bench.capacity import nofile_needed, open_streams, raise_nofile, startup
from bench.config import SLOW_GAP_MS, Config, gateway_env
from bench.extended import agent_session, chunk_series
from bench.floor import floor_ratios, measure_floors
from bench.procs import Processes
from bench.report import nofile_text
from bench.stack import Gateway, Simulator, start_gateway

__all__ = ("measure_extended",)

HEARTBEAT_S = 1.0


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fresh(procs: Processes, root: Path, name: str, env: dict[str, str]) -> Gateway:
    (root / name).mkdir(parents=True, exist_ok=True)
    return start_gateway(procs, root / name / "d", root / name / "s.sock", env, bundled=True)


async def measure_extended(
    cfg: Config, sim: Simulator, gw: Gateway, root: Path, base_env: dict[str, str]
) -> dict[str, Any]:
    """Chunks on the shared gateway; start-up, the agent session and the open streams each on a fresh one."""
    out: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    if cfg.chunk_turns > 0:
        _progress("extended: streamed replies of 20 and 200 chunks")
        out["chunks"] = await chunk_series(sim, gw, turns=cfg.chunk_turns)
        _progress("extended: the floor (bare relays and a bare Litestar route)")
        out["chunks"]["floor"] = floor = await asyncio.to_thread(measure_floors)
        out["chunks"]["floor_ratio"] = floor_ratios(out["chunks"]["processes"], floor)
    procs = Processes(root)
    try:
        _progress("extended: start-up to the first valid completion")
        env = gateway_env(cfg, base_env, root / "x-startup-sims")
        out["startup"] = await startup(procs, root / "x-startup", env, root / "x-startup-basesim")
        procs.stop_all()
        if cfg.agent_turns > 0:
            _progress(f"extended: agent session of {cfg.agent_turns} turns on a fresh gateway")
            env = gateway_env(cfg, base_env, root / "x-agent-sims")
            out["agent"] = await agent_session(sim, _fresh(procs, root, "x-agent", env), cfg.agent_turns)
            procs.stop_all()
        if cfg.streams <= 0:
            return out | {"loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
        before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        need = nofile_needed(cfg.streams)
        soft, hard = raise_nofile(need)
        out["nofile"] = {"before": before, "soft": soft, "hard": hard, "needed": need}
        _progress(f"extended: {cfg.streams} concurrent slow streams; {nofile_text(out['nofile'])}")
        if soft < need:
            _progress(f"extended: warning: {soft} descriptors may be too few; streams past them fail with EMFILE")
        env = gateway_env(cfg, base_env, root / "x-streams-sims") | {
            "GATEWAY_MAX_IN_FLIGHT": str(cfg.streams + 100),
            "GATEWAY_INSTANCE_MAX_IN_FLIGHT": str(cfg.streams + 100),
            "GATEWAY_HEARTBEAT_SEC": str(HEARTBEAT_S),
        }
        out["streams"] = await open_streams(sim, _fresh(procs, root, "x-streams", env), cfg.streams, HEARTBEAT_S)
        out["streams"]["pause_ms"] = SLOW_GAP_MS
    finally:
        procs.stop_all()
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out
