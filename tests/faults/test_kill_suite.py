"""The kill suite: kill -9 of the sidecar, a Lingma process or ``serve`` at random points of 50 streamed turns.

A fixed seed picks, for each turn, its dialect, whether it continues an earlier conversation, and whether
something is killed before it or in the middle of its stream. Whatever happens, every stream completes or
ends with its dialect's terminal error (a killed ``serve`` is an EOF within 5 s), nothing is orphaned, the
session cache passes its integrity check, and every session committed before a kill is reused after it.
Stores are written behind: a sidecar or serve kill right after a conversation's turn may lose that turn's
store, which costs its next turn a fresh session (whole transcript, turn 1), never a wrong one.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.helpers import DIALECTS, Outcome, collect_turn, sidecar_of, stream_turn, wait_gone
from tests.support.gateway import Gateway

SEED = 1313
TURNS = 50
KINDS = ("sidecar", "lingma", "serve")
KILLS_PER_KIND = 3
SCENARIO = {"turns": [{"match": "linger", "reply": [{"text": "slow start "}, {"delay_ms": 500}, {"text": "slow end"}]}]}


@dataclass
class Conversation:
    dialect: str
    history: list[dict[str, str]] = field(default_factory=list)
    session: str = ""
    turns: int = 0
    reusable: bool = False
    """Its last turn completed and nothing has claimed its entry since."""
    kills_before: int = 0
    """How many kills had happened when its last turn completed."""
    store_at_risk: bool = False
    """The sidecar or serve was killed right after its last turn: that turn's store may have been lost."""


@dataclass
class Kill:
    kind: str
    mid_stream: bool
    killed_at: float | None = None

    def __call__(self, n: int, line: str) -> None:
        """Kill once the stream has shown its first piece of text."""
        if self.killed_at is None and "slow start" in line:
            self.killed_at = time.monotonic()
            self.action()

    action: Any = None


class Suite:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.pids: set[int] = set()
        self.recovery: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.eofs: list[float] = []
        self.orphans_gone: list[float] = []
        self.note_pids()

    def note_pids(self) -> None:
        for pid in (self.gw.main.pid, sidecar_of(self.gw.main.pid), self.gw.lingma_pid()):
            if pid:
                self.pids.add(pid)

    def kill(self, kind: str) -> None:
        if kind == "serve":
            pid: int | None = self.gw.main.pid
        elif kind == "sidecar":
            pid = sidecar_of(self.gw.main.pid)
        else:
            pid = self.gw.lingma_pid()
        assert pid, f"no {kind} process to kill"
        self.killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)

    def recover(self, kind: str) -> None:
        """Bring the gateway back (an orchestrator restarts a killed serve) and time it from the kill."""
        if kind == "serve":
            self.gw.main.wait(10)
            orphans = wait_gone([p for p in self.pids if p != self.gw.main.pid], 10)
            assert orphans == [], f"processes outlived their killed serve: {orphans}"
            self.orphans_gone.append(time.monotonic() - self.killed)
            self.gw.start(wait=False)

        def served() -> bool:
            try:
                probe = collect_turn(self.gw.url, "openai_chat", [{"role": "user", "content": "probe"}], timeout=10)
            except Exception:  # noqa: BLE001 - not up yet
                return False
            return probe.status_code == 200

        wait_for(served, 60, 0.05, what=f"a served turn after killing {kind}")
        self.recovery[kind].append(time.monotonic() - self.killed)
        self.note_pids()


def _plan(rng: random.Random) -> dict[int, Kill]:
    kinds = [kind for kind in KINDS for _ in range(KILLS_PER_KIND)]
    rng.shuffle(kinds)
    slots = sorted(rng.sample(range(2, TURNS), len(kinds)))
    return {slot: Kill(kind, mid_stream=rng.random() < 0.6) for slot, kind in zip(slots, kinds, strict=True)}


def _check(out: Outcome, kill: Kill | None) -> None:
    if out.terminal == "eof":
        assert kill is not None and kill.kind == "serve" and kill.killed_at is not None, out
        assert out.eof_after is not None and out.eof_after <= 5, out
        return
    if out.terminal == "http_error":
        assert out.status in (429, 500, 502, 503, 504, 529) and out.error, out
        return
    assert out.status == 200 and out.terminal in ("completed", "error") and out.terminals == 1, out


def _parse_reply(text: str) -> tuple[int, str]:
    words = text.split()
    assert words[:2] == ["sim:", "turn"], text
    return int(words[2]), words[5].rstrip(";")


@pytest.mark.timeout(240)
def test_kill_suite(gateways: Any) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    gw: Gateway = gateways(scenario=SCENARIO)
    suite = Suite(gw)
    plan = _plan(rng)
    conversations: list[Conversation] = []
    outcomes: list[str] = []
    kills = reused_across_kills = fresh_after_kill = 0
    last: Conversation | None = None
    for turn in range(TURNS):
        kill = plan.get(turn)
        if kill is not None:
            kills += 1
            if last is not None and kill.kind != "lingma":
                last.store_at_risk = True
            kill.action = lambda kind=kill.kind: suite.kill(kind)
            if not kill.mid_stream:
                suite.kill(kill.kind)
                kill.killed_at = time.monotonic()
                if kill.kind == "serve":
                    suite.recover("serve")
        reusable = [c for c in conversations if c.reusable]
        if kill is not None and kill.mid_stream:
            conv, newest = Conversation(rng.choice(DIALECTS)), f"linger on turn {turn}"
        elif reusable and rng.random() < 0.5:
            conv, newest = rng.choice(reusable), f"and then, turn {turn}?"
        else:
            conv, newest = Conversation(rng.choice(DIALECTS)), f"a new conversation at turn {turn}"
        if conv not in conversations:
            conversations.append(conv)
        history = [*conv.history, {"role": "user", "content": newest}]
        follows = conv.reusable
        out = stream_turn(gw.url, conv.dialect, history, on_line=kill if kill and kill.mid_stream else None)
        _check(out, kill)
        if out.terminal == "eof":
            suite.eofs.append(out.eof_after or 0.0)
        outcomes.append(out.terminal)
        conv.reusable = False
        last = conv if out.terminal == "completed" else None
        if out.terminal == "completed" and "linger" not in newest:
            number, session = _parse_reply(out.text)
            if follows and conv.store_at_risk and number == 1:
                fresh_after_kill += 1  # its store was lost with the kill: a fresh session, sent everything
            elif follows:
                assert (number, session) == (conv.turns + 1, conv.session), "a committed session was not reused"
                reused_across_kills += conv.kills_before < kills
            conv.store_at_risk = False
            conv.history, conv.turns, conv.session = (
                [*history, {"role": "assistant", "content": out.text}],
                number,
                session,
            )
            conv.reusable, conv.kills_before = True, kills
        if kill is not None and (kill.mid_stream or kill.kind != "serve"):
            if kill.mid_stream:
                assert kill.killed_at is not None, f"turn {turn} ended before its kill"
            suite.recover(kill.kind)

    # Every session committed before a kill (and not continued since) is still reused now.
    checked = [c for c in conversations if c.reusable]
    for conv in checked:
        history = [*conv.history, {"role": "user", "content": "one more"}]
        out = stream_turn(gw.url, conv.dialect, history)
        assert out.terminal == "completed", out
        number, session = _parse_reply(out.text)
        if conv.store_at_risk and number == 1:
            fresh_after_kill += 1
            continue
        assert (number, session) == (conv.turns + 1, conv.session)
        reused_across_kills += conv.kills_before < kills
    suite.note_pids()
    gw.stop()
    assert wait_gone(sorted(suite.pids), 10) == [], "orphaned processes"
    with sqlite3.connect(gw.data / "session-cache.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    took = time.monotonic() - started
    summary = ", ".join(
        f"{kind} median {statistics.median(times):.2f}s max {max(times):.2f}s" for kind, times in suite.recovery.items()
    )
    counts = {k: outcomes.count(k) for k in ("completed", "error", "http_error", "eof")}
    print(f"\nkill suite: {took:.0f}s; outcomes {counts}; sessions reused across a kill {reused_across_kills} (fresh after a lost store {fresh_after_kill}); recovery: {summary}; "
          f"EOF after serve kill max {max(suite.eofs, default=0):.2f}s; its children gone after {suite.orphans_gone}")  # fmt: skip
    assert reused_across_kills >= 5
    assert took < 180
