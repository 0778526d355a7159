"""What one benchmark invocation measures: the command line, and the environment given to the processes."""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ("SCENARIOS", "SIM_SCENARIO", "Config", "gateway_env", "parse_args", "sim_env", "sim_root")

SCENARIOS = ("non_stream", "stream")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
# Short and without delays: the simulator should cost as little as possible per turn. The marked entries
# serve the extended measurements (bench/extended.py); a prompt's last marker picks its entry.
SLOW_GAP_MS = 2500.0
SIM_SCENARIO = {
    "turns": [
        {"match": "ping", "chunk_size": 8, "reply": [{"text": "pong from the sim"}]},
        {"match": "BENCH-C20\\b", "chunks": [f"w{i:03d} " for i in range(20)], "reply": [{"text": "x"}]},
        {"match": "BENCH-C200\\b", "chunks": [f"w{i:03d} " for i in range(200)], "reply": [{"text": "x"}]},
        {
            "match": "BENCH-SLOW",
            "reply": [
                {"text": "slow ", "delay_ms": SLOW_GAP_MS},
                {"text": "stream ", "delay_ms": SLOW_GAP_MS},
                {"text": "done"},
            ],
        },
        {
            "match": "BENCH-AGENT",
            "reply": [
                {"text": "Looking at the files next."},
                {"tool_call": {"name": "Bash", "arguments": {"command": "ls -la src", "description": "List src"}}},
            ],
        },
    ]
}


@dataclass(frozen=True)
class Config:
    """The parsed command line; ``--quick`` only changes the defaults of ``requests`` and ``runs``."""

    requests: int
    runs: int
    concurrency: tuple[int, ...]
    scenarios: tuple[str, ...]
    warmup: int | None
    limit_s: float
    timeout_s: float
    max_in_flight: int
    mode: str
    quirks: bool
    journal: bool
    out: Path
    keep: bool
    quick: bool
    sim_on_disk: bool
    extended: bool = False
    classic: bool = True
    agent_turns: int = 200
    chunk_turns: int = 60
    streams: int = 1000

    def warmup_for(self, concurrency: int) -> int:
        return self.warmup if self.warmup is not None else max(2 * concurrency, min(200, self.requests // 10))


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _names(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    if not values or not set(values) <= set(SCENARIOS):
        raise argparse.ArgumentTypeError(f"a comma-separated list from {','.join(SCENARIOS)}")
    return values


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Chat Completions req/s, p50 and p99 through the gateway, as ratios to the bare simulator.",
    )
    p.add_argument("--requests", type=int, help="timed requests per measurement (default 2000; --quick 200)")
    p.add_argument("--runs", type=int, help="runs; the median is reported (default 3; --quick 1)")
    p.add_argument("--concurrency", type=_ints, default=(1, 32), help="comma-separated (default 1,32)")
    p.add_argument("--scenarios", type=_names, default=SCENARIOS, help="non_stream,stream (default both)")
    p.add_argument("--quick", action="store_true", help="smoke mode: 200 requests, 1 run")
    p.add_argument("--warmup", type=int, help="untimed requests first (default max(2*conc, min(200, requests/10)))")
    p.add_argument("--limit-s", type=float, default=120.0, help="wall-clock cap per measurement phase")
    p.add_argument("--timeout-s", type=float, default=30.0, help="per-request timeout")
    p.add_argument("--max-in-flight", type=int, help="GATEWAY_MAX_IN_FLIGHT and _INSTANCE_ (default max(64, 2*conc))")
    p.add_argument("--mode", choices=("auto", "serve", "split"), default="auto", help="gateway layout")
    p.add_argument("--quirks", action="store_true", help="keep the simulator's wire quirks on (default off)")
    p.add_argument("--journal", action="store_true", help="keep the simulator journal (default /dev/null)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument(
        "--sim-on-disk",
        action="store_true",
        help="keep the simulators' work dirs under /tmp too (default: on /dev/shm when it is a writable tmpfs)",
    )
    p.add_argument("--agent-turns", type=int, default=200, help="turns of the agent session (default 200)")
    p.add_argument("--chunk-turns", type=int, default=60, help="turns of 20 chunks; a third as many of 200")
    p.add_argument("--streams", type=int, default=1000, help="concurrent slow streams (default 1000)")
    p.add_argument("--no-extended", action="store_true", help="only the classic table (as --quick does)")
    p.add_argument("--only-extended", action="store_true", help="skip the classic table")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir and process logs")
    a = p.parse_args(argv)
    requests = a.requests if a.requests is not None else (200 if a.quick else 2000)
    runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    if requests < 1 or runs < 1:
        p.error("--requests and --runs must be positive")
    return Config(
        requests=requests,
        runs=runs,
        concurrency=a.concurrency,
        scenarios=a.scenarios,
        warmup=a.warmup,
        limit_s=a.limit_s,
        timeout_s=a.timeout_s,
        max_in_flight=a.max_in_flight or max(64, 2 * max(a.concurrency)),
        mode=a.mode,
        quirks=a.quirks,
        journal=a.journal,
        out=a.out,
        keep=a.keep,
        quick=a.quick,
        sim_on_disk=a.sim_on_disk,
        extended=not (a.quick or a.no_extended),
        agent_turns=a.agent_turns,
        chunk_turns=a.chunk_turns,
        streams=a.streams,
        classic=not a.only_extended,
    )


def sim_env(cfg: Config, scenario: Path) -> dict[str, str]:
    """Quirks off and the journal to /dev/null by default: test aids whose cost the real binary does not have."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINGMA_", "GATEWAY_", "API_KEYS"))}
    env["LINGMA_SIM_SCENARIO"] = str(scenario)
    env["LINGMA_SIM_QUIRKS"] = "1" if cfg.quirks else "0"
    if not cfg.journal:
        env["LINGMA_SIM_JOURNAL"] = os.devnull
    return env


def sim_root(cfg: Config, data_root: Path) -> Path:
    """Where the simulators' work dirs go (the gateway's data dir and socket stay under /tmp).

    The simulator writes a session file three times per turn; on this machine's disk that kernel time
    (1-2.5 ms a turn, varying with the disk's other traffic) would dominate and blur both sides of every
    ratio, so by default its work dirs live on tmpfs. The gateway's own data dir stays on disk.
    """
    shm = Path("/dev/shm")
    if cfg.sim_on_disk or not (shm.is_dir() and os.access(shm, os.W_OK)):
        return data_root / "sim"
    return Path(tempfile.mkdtemp(prefix="lgb-", dir=shm))


def gateway_env(cfg: Config, base: dict[str, str], work_dir: Path) -> dict[str, str]:
    return base | {
        "LINGMA_WORK_DIR": str(work_dir),
        "GATEWAY_MAX_IN_FLIGHT": str(cfg.max_in_flight),
        "GATEWAY_INSTANCE_MAX_IN_FLIGHT": str(cfg.max_in_flight),
        "GATEWAY_QUEUE_TIMEOUT_SEC": str(cfg.timeout_s),
        "INSTANCE_COUNT": "1",
        "LINGMA_SOCKET_PORT": str(random.randrange(41000, 48000)),
    }
