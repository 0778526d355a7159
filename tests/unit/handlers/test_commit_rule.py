"""The commit rule and heartbeats (``handlers.streaming``) against a real sidecar server in process.

Before the first content event or the first heartbeat a failure is an HTTP error; after it the stream
owns the failure and ends with exactly one terminal, whatever the sidecar does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from common.client import InProcessTransport, SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.errors import RateLimitedError, UpstreamError
from common.frames import pack_frame, read_frame
from common.protocol import PROTOCOL_MAJOR, Event, Failed, Finished, HelloOk, Started, TextDelta, encode
from handlers import streaming as turn_module
from handlers.streaming import ClientGoneError, collect_turn, open_turn, stream_body
from tests.support.inprocess import InProcessSidecar, scripted_sidecar

SCRIPT = {
    "turns": [
        {"match": "quick", "events": [{"t": "text", "text": "fast"}, {"t": "finished", "reason": "stop"}]},
        {
            "match": "refused",
            "events": [{"t": "failed", "code": "rate_limited", "message": "busy", "retry_after_s": 4}],
        },
        {
            "match": "slow",
            "events": [{"t": "sleep", "ms": 300}, {"t": "text", "text": "late"}, {"t": "finished", "reason": "stop"}],
        },
        {
            "match": "breaks",
            "events": [{"t": "text", "text": "half"}, {"t": "failed", "code": "upstream_error", "message": "boom"}],
        },
        {"match": "silent", "events": [{"t": "sleep", "ms": 5000}, {"t": "finished"}]},
    ]
}


class Recorder:
    """A stream encoder that writes down what it was given."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def start(self, started: Started) -> bytes:
        self.log.append(f"start:{started.instance}")
        return b"S"

    def feed(self, event: Event) -> bytes:
        self.log.append(type(event).__name__ + (f":{event.text}" if isinstance(event, TextDelta) else ""))
        return b"E"

    def heartbeat(self) -> bytes:
        self.log.append("heartbeat")
        return b"H"

    @property
    def terminals(self) -> list[str]:
        return [entry for entry in self.log if entry in ("Finished", "Failed")]


def conv(text: str) -> Conversation:
    return Conversation(model="m", messages=[Message(role="user", content=[TextPart(text)])])


@pytest.fixture
async def sidecar() -> AsyncIterator[InProcessSidecar]:
    side = scripted_sidecar(SCRIPT)
    yield side
    await side.aclose()


async def drain(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


async def test_the_first_content_event_commits_and_is_kept_for_the_stream(sidecar: InProcessSidecar) -> None:
    turn = await open_turn(sidecar.client, conv("quick"), "r1", commit_after=5.0)
    assert turn.started is not None and turn.started.instance == "scripted"
    assert turn.pending == [TextDelta(text="fast")]
    rec = Recorder()
    out = await drain(stream_body(turn, rec, heartbeat_sec=5.0, draining=asyncio.Event()))
    assert rec.log == ["start:scripted", "TextDelta:fast", "Finished"]
    assert out == b"SEE"


async def test_a_failure_before_commit_raises_its_error(sidecar: InProcessSidecar) -> None:
    with pytest.raises(RateLimitedError) as caught:
        await open_turn(sidecar.client, conv("refused"), "r2", commit_after=5.0)
    assert caught.value.retry_after_s == 4
    # The error carries the sidecar's frame as it was made: nothing rebuilt it on the way.
    assert caught.value.failed == Failed(code="rate_limited", message="busy", retry_after_s=4)


async def test_a_silent_start_commits_when_the_first_heartbeat_is_due(sidecar: InProcessSidecar) -> None:
    began = time.monotonic()
    turn = await open_turn(sidecar.client, conv("slow"), "r3", commit_after=0.05)
    assert time.monotonic() - began < 0.25  # committed on the heartbeat, long before the text
    assert turn.pending == []
    rec = Recorder()
    await drain(stream_body(turn, rec, heartbeat_sec=0.05, draining=asyncio.Event()))
    assert rec.log[0] == "start:scripted"
    assert rec.log.count("heartbeat") >= 2
    assert rec.log[-2:] == ["TextDelta:late", "Finished"]
    assert rec.log.index("heartbeat") < rec.log.index("TextDelta:late")


async def test_a_failure_after_commit_is_the_streams_one_terminal(sidecar: InProcessSidecar) -> None:
    turn = await open_turn(sidecar.client, conv("breaks"), "r4", commit_after=5.0)
    rec = Recorder()
    await drain(stream_body(turn, rec, heartbeat_sec=5.0, draining=asyncio.Event()))
    assert rec.log == ["start:scripted", "TextDelta:half", "Failed"]


async def test_a_sidecar_lost_mid_stream_still_gets_one_terminal() -> None:
    async def dies_after_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
        await read_frame(reader)
        writer.write(pack_frame(encode(Started(model="m", instance="x"))))
        writer.write(pack_frame(encode(TextDelta(text="so far"))))
        await writer.drain()
        writer.close()

    client = SidecarClient(InProcessTransport(dies_after_text))
    turn = await open_turn(client, conv("any"), "r5", commit_after=5.0)
    seen: list[Event] = []

    class Keep(Recorder):
        def feed(self, event: Event) -> bytes:
            seen.append(event)
            return super().feed(event)

    rec = Keep()
    await drain(stream_body(turn, rec, heartbeat_sec=5.0, draining=asyncio.Event()))
    assert rec.log == ["start:x", "TextDelta:so far", "Failed"]
    # The client made the terminal where it saw the break; the stream passed it on as it was.
    assert isinstance(seen[-1], Failed) and seen[-1].code == "sidecar_unavailable"


async def test_draining_ends_a_quiet_stream_after_the_grace(
    sidecar: InProcessSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(turn_module, "DRAIN_GRACE", 0.1)
    turn = await open_turn(sidecar.client, conv("silent"), "r6", commit_after=0.02)
    draining = asyncio.Event()
    draining.set()
    rec = Recorder()
    began = time.monotonic()
    await drain(stream_body(turn, rec, heartbeat_sec=0.05, draining=draining))
    assert time.monotonic() - began < 2
    assert rec.terminals == ["Failed"] and rec.log[-1] == "Failed"
    for _ in range(100):  # the turn was cancelled in the sidecar, not left running
        if sidecar.stats.requests["cancelled_by_client"]:
            break
        await asyncio.sleep(0.01)
    assert sidecar.stats.requests["cancelled_by_client"] == 1


async def test_a_consumer_that_stops_early_cancels_the_turn(sidecar: InProcessSidecar) -> None:
    turn = await open_turn(sidecar.client, conv("silent"), "r7", commit_after=0.02)
    body = stream_body(turn, Recorder(), heartbeat_sec=0.02, draining=asyncio.Event())
    assert await anext(body) == b"S"
    assert await anext(body) == b"H"
    await body.aclose()  # the HTTP client went away
    for _ in range(100):
        if sidecar.stats.requests["cancelled_by_client"]:
            break
        await asyncio.sleep(0.01)
    assert sidecar.stats.requests["cancelled_by_client"] == 1
    assert sidecar.admission.in_flight == 0


async def test_collect_turn_returns_every_event_or_raises() -> None:
    side = scripted_sidecar(SCRIPT)
    try:
        events = await collect_turn(side.client, conv("quick"), "r8")
        assert [type(e) for e in events] == [Started, TextDelta, Finished]
        with pytest.raises(UpstreamError, match="boom"):
            await collect_turn(side.client, conv("breaks"), "r9")
    finally:
        await side.aclose()


async def test_a_client_that_hangs_up_before_the_answer_cancels_it(sidecar: InProcessSidecar) -> None:
    async def receive() -> Mapping[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    with pytest.raises(ClientGoneError):
        await collect_turn(sidecar.client, conv("silent"), "r10", receive=receive)
    for _ in range(100):
        if sidecar.stats.requests["cancelled_by_client"]:
            break
        await asyncio.sleep(0.01)
    assert sidecar.stats.requests["cancelled_by_client"] == 1


async def test_a_failed_terminal_is_kept_as_is(sidecar: InProcessSidecar) -> None:
    turn = await open_turn(sidecar.client, conv("breaks"), "r11", commit_after=5.0)
    seen: list[Event] = []

    class Keep(Recorder):
        def feed(self, event: Event) -> bytes:
            seen.append(event)
            return super().feed(event)

    await drain(stream_body(turn, Keep(), heartbeat_sec=5.0, draining=asyncio.Event()))
    assert seen[-1] == Failed(code="upstream_error", message="boom")
