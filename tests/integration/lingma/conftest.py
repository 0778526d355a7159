"""Fixtures for the Lingma client: real simulator subprocesses in tmp work dirs, always stopped."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.lingma.instance import LingmaInstance

SIM_BIN = Path(sys.executable).with_name("lingma-sim")


def free_port_pair() -> int:
    """A port p with p and p + 500 both free right now (the launcher scans on if one gets taken)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 500 < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 500))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


def read_journal(work_dir: Path) -> list[dict[str, Any]]:
    path = work_dir / "sim-journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def wait_journal(
    work_dir: Path, predicate: Callable[[list[dict[str, Any]]], Any], *, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Poll the journal until ``predicate(entries)`` is truthy; fail loudly at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        entries = read_journal(work_dir)
        if predicate(entries):
            return entries
        if loop.time() >= deadline:
            raise AssertionError(f"journal condition not met within {timeout}s; last entries: {entries[-5:]}")
        await asyncio.sleep(0.02)


def write_scenario(path: Path, turns: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"turns": turns}), encoding="utf-8")
    return path


InstanceFactory = Callable[..., LingmaInstance]


@pytest.fixture
async def make_instance(tmp_path: Path) -> AsyncIterator[InstanceFactory]:
    """Build LingmaInstances that run the simulator; every one is stopped at teardown."""
    assert SIM_BIN.exists(), f"lingma-sim is not installed beside {sys.executable}: install the project"
    made: list[LingmaInstance] = []

    def make(
        *,
        instance_id: str = "inst-0",
        work_dir: Path | None = None,
        env: dict[str, str] | None = None,
        rpc_timeout: float = 20.0,
        restart_delay: float = 0.1,
        first_port: int | None = None,
    ) -> LingmaInstance:
        base_env = {"LINGMA_SIM_SCENARIO": "", "LINGMA_SIM_LOGGED_OUT": "", "LINGMA_SIM_JOURNAL": ""}
        instance = LingmaInstance(
            instance_id=instance_id,
            binary=str(SIM_BIN),
            work_dir=work_dir or tmp_path / instance_id,
            first_port=first_port or free_port_pair(),
            startup_timeout=20.0,
            rpc_timeout=rpc_timeout,
            env={**base_env, **(env or {})},
            restart_delay=restart_delay,
        )
        made.append(instance)
        return instance

    yield make
    await asyncio.gather(*(instance.stop() for instance in made))
