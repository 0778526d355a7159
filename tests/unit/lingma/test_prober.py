"""The prober's rules in isolation: misses in a row, an immediate re-probe after a miss, pokes, and resets."""

from __future__ import annotations

import asyncio

from common.errors import UpstreamTimeoutError, UpstreamUnavailableError
from sidecar.lingma.prober import Prober


class Target:
    def __init__(self) -> None:
        self.answers: list[str] = []
        self.calls = 0
        self.hung: list[str] = []
        self.wanted = True

    async def probe(self, timeout: float) -> object:
        self.calls += 1
        outcome = self.answers.pop(0) if self.answers else "ok"
        if outcome == "hang":
            await asyncio.sleep(10)
        if outcome == "timeout":
            raise UpstreamTimeoutError("no answer")
        if outcome == "gone":
            raise UpstreamUnavailableError("closed")
        return {}

    async def on_hung(self, reason: str) -> None:
        self.hung.append(reason)

    def prober(self, misses: int = 3, interval: float = 60.0) -> Prober:
        return Prober("inst-x", probe=self.probe, can_probe=lambda: self.wanted, on_hung=self.on_hung,
                      interval=interval, timeout=0.05, misses=misses)  # fmt: skip


async def test_only_misses_in_a_row_mark_hung() -> None:
    target = Target()
    prober = target.prober(misses=3)
    target.answers = ["hang", "timeout", "ok", "hang", "hang"]
    for _ in range(5):
        await prober.probe_once()
    assert target.hung == [] and prober.misses == 2 and prober.missed_total == 4
    target.answers = ["hang"]
    assert await prober.probe_once() is False
    assert target.hung == ["inst-x missed 3 liveness probes of 0.05s: it is hung"]
    assert prober.misses == 0 and prober.hung_total == 1


async def test_a_closed_connection_is_neither_an_answer_nor_a_miss() -> None:
    target = Target()
    prober = target.prober(misses=1)
    target.answers = ["gone"]
    assert await prober.probe_once() is None
    assert target.hung == [] and prober.missed_total == 0 and prober.last_answer_at is None
    target.wanted = False
    assert await prober.probe_once() is None and target.calls == 1, "nothing to probe: no call at all"


async def test_a_miss_and_a_poke_probe_again_at_once() -> None:
    target = Target()
    prober = target.prober(misses=2, interval=60.0)
    target.answers = ["hang", "hang"]
    task = asyncio.create_task(prober.run())
    try:
        prober.poke()
        async with asyncio.timeout(2):
            while not target.hung:
                await asyncio.sleep(0.01)
        assert target.calls == 2, "the second probe followed the first miss without waiting an interval"
        prober.poke()
        async with asyncio.timeout(2):
            while target.calls < 3:
                await asyncio.sleep(0.01)
        assert prober.last_answer_at is not None
    finally:
        task.cancel()


async def test_an_unanswered_probe_while_the_process_keeps_sending_is_busy_not_hung() -> None:
    """Under a burst of turns the answer to ``auth/status`` waits behind theirs; the process is not hung for it."""
    target = Target()
    sent = [0]

    async def slow_but_talking(timeout: float) -> object:
        sent[0] += 1  # the process answers other requests meanwhile
        await asyncio.sleep(10)
        return {}

    prober = Prober("inst-x", probe=slow_but_talking, can_probe=lambda: True, on_hung=target.on_hung,
                    interval=60.0, timeout=0.05, misses=2, activity=lambda: sent[0])  # fmt: skip
    for _ in range(4):
        assert await prober.probe_once() is None
    assert target.hung == [] and prober.missed_total == 0 and prober.busy_total == 4
    # Silent as well as unanswered: that is a hang.
    silent = Prober("inst-x", probe=target.probe, can_probe=lambda: True, on_hung=target.on_hung,
                    interval=60.0, timeout=0.05, misses=2, activity=lambda: sent[0])  # fmt: skip
    target.answers = ["hang", "hang"]
    assert [await silent.probe_once() for _ in range(2)] == [False, False]
    assert target.hung == ["inst-x missed 2 liveness probes of 0.05s: it is hung"]
