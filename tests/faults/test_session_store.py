"""The session store across the end of a real sidecar (with its simulator) and a restart on the same data dir.

Stores are written behind. SIGTERM writes every pending one before the sidecar exits, so nothing is lost;
a kill -9 may lose the last moments of session stores, which costs the next turn a fresh session and never
an answer from the wrong history; a response is committed before its terminal, so a kill cannot lose it.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from common.client import SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.protocol import Complete, Event, Finished, Started, TextDelta
from tests.conftest import SidecarProcess

DB = "session-cache.sqlite3"


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


def assistant(text: str) -> Message:
    return Message(role="assistant", content=[TextPart(text)])


async def ready_sidecar(sidecar_factory: Any) -> SidecarProcess:
    """A sidecar with the simulator on the test's data dir, once its instance is ready to take turns."""
    side: SidecarProcess = sidecar_factory(["--simulator"])
    client = SidecarClient(side.socket)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not (await client.ping()).ready:
            assert asyncio.get_running_loop().time() < deadline, "the sidecar never became ready"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    return side


async def turn(side: SidecarProcess, messages: list[Message], **extra: Any) -> tuple[Started, str]:
    """One whole turn over the sidecar's socket: how its session was chosen, and the reply's text."""
    client = SidecarClient(side.socket)
    try:
        op = Complete(conversation=Conversation(model="auto", messages=messages, api_key_fingerprint="fp", **extra))
        async with client.stream(op) as events:
            got: list[Event] = [e async for e in events]
    finally:
        await client.aclose()
    assert isinstance(got[0], Started) and isinstance(got[-1], Finished), got
    return got[0], "".join(e.text for e in got if isinstance(e, TextDelta))


def session_of(reply: str) -> tuple[int, str]:
    """(turn number, session) from the simulator's default reply: ``sim: turn N of session S; ...``."""
    words = reply.split()
    assert words[:2] == ["sim:", "turn"], reply
    return int(words[2]), words[5].rstrip(";")


def committed(data: Path, sql: str) -> list[tuple[Any, ...]]:
    """What another process reading the cache file sees."""
    with sqlite3.connect(data / DB) as db:
        return list(db.execute(sql))


async def test_sigterm_writes_pending_stores_and_the_restarted_sidecar_continues_from_them(
    sidecar_factory: Any,
) -> None:
    side = await ready_sidecar(sidecar_factory)
    first = [user("remember the colour teal")]
    started, said = await turn(side, first, response_id="resp_1")
    assert started.session == "fresh"
    number, session = session_of(said)
    assert await asyncio.to_thread(side.stop) == 0, (
        side.log.read_text()
    )  # SIGTERM right after the turn: the store may be pending
    assert len(committed(side.data_dir, "SELECT key FROM sessions")) == 1
    assert committed(side.data_dir, "SELECT parent FROM responses WHERE response_id = 'resp_1'") == [(None,)]

    again = await ready_sidecar(sidecar_factory)
    follow = [*first, assistant(said), user("which colour?")]
    started, said = await turn(again, follow, response_id="resp_2", previous_response_id=None)
    assert started.session == "reused"
    assert session_of(said) == (number + 1, session)
    # The Responses chain, read back from its deltas after the restart.
    started, said = await turn(again, [user("and the shade?")], previous_response_id="resp_2", response_id="resp_3")
    assert started.session == "reused" and session_of(said) == (number + 2, session)
    assert await asyncio.to_thread(again.stop) == 0, again.log.read_text()
    rows = committed(again.data_dir, "SELECT response_id, parent FROM responses ORDER BY response_id")
    assert rows == [("resp_1", None), ("resp_2", None), ("resp_3", "resp_2")]


@pytest.mark.parametrize("round_", range(3))
async def test_a_kill_9_costs_at_most_a_fresh_turn_and_never_a_wrong_answer(sidecar_factory: Any, round_: int) -> None:
    side = await ready_sidecar(sidecar_factory)
    first = [user(f"round {round_}: remember the number {round_ + 40}")]
    _, said = await turn(side, first, response_id="resp_a")
    number, session = session_of(said)
    assert side.proc is not None
    side.proc.send_signal(signal.SIGKILL)  # at once: stores of the last moments may be lost
    side.proc.wait()

    again = await ready_sidecar(sidecar_factory)
    follow = [*first, assistant(said), user("which number?")]
    started, reply = await turn(again, follow)
    if started.session == "reused":
        assert session_of(reply) == (number + 1, session), "a reused session is the one that holds this history"
    else:
        assert session_of(reply)[0] == 1, "a lost entry costs a fresh session, which is sent the whole transcript"
    # The response id was committed before its terminal went out, so the kill cannot have lost it.
    _, reply = await turn(again, [user("and doubled?")], previous_response_id="resp_a")
    assert reply.endswith("you said: and doubled?")
