"""Frames that arrive together leave together, and a frame that arrives alone is not held for company.

A scripted sidecar on the in-process transport writes its frames in the groups each test chooses (one
``write`` per group, so one group is what one socket read would bring); the stream body is read piece by
piece, each piece being one write to the HTTP client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from common.client import InProcessTransport, SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.frames import FrameDecoder, FrameTooLargeError, pack_frame, read_frame
from common.protocol import PROTOCOL_MAJOR, Finished, HelloOk, Reply, Started, TextDelta, encode
from handlers.streaming import open_turn, stream_body
from tests.unit.handlers.test_commit_rule import Recorder

Groups = Callable[[asyncio.StreamWriter], Awaitable[None]]


def _sidecar(groups: Groups) -> SidecarClient:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
        await read_frame(reader)
        await groups(writer)
        await reader.read()

    return SidecarClient(InProcessTransport(serve))


def _group(writer: asyncio.StreamWriter, *frames: Reply) -> None:
    writer.write(b"".join(pack_frame(encode(f)) for f in frames))


def _conv() -> Conversation:
    return Conversation(model="m", messages=[Message(role="user", content=[TextPart("hi")])])


async def _pieces(body: AsyncIterator[bytes]) -> list[bytes]:
    return [piece async for piece in body]


async def test_a_burst_of_frames_leaves_in_one_piece() -> None:
    async def one_write(writer: asyncio.StreamWriter) -> None:
        _group(writer, Started(model="m"), *(TextDelta(text=t) for t in "abcde"), Finished())

    client = _sidecar(one_write)
    turn = await open_turn(client, _conv(), "b1", commit_after=5.0)
    rec = Recorder()
    pieces = await _pieces(stream_body(turn, rec, heartbeat_sec=5.0, draining=asyncio.Event()))
    assert pieces == [b"S" + b"E" * 6]
    assert rec.log == ["start:", *(f"TextDelta:{t}" for t in "abcde"), "Finished"]
    await client.aclose()


async def test_each_group_is_one_piece_in_order() -> None:
    gates = [asyncio.Event(), asyncio.Event()]

    async def three_writes(writer: asyncio.StreamWriter) -> None:
        _group(writer, Started(model="m"), TextDelta(text="a"))
        await gates[0].wait()
        _group(writer, TextDelta(text="b"), TextDelta(text="c"))
        await gates[1].wait()
        _group(writer, TextDelta(text="d"), Finished())

    client = _sidecar(three_writes)
    turn = await open_turn(client, _conv(), "b2", commit_after=5.0)
    rec = Recorder()
    body = stream_body(turn, rec, heartbeat_sec=5.0, draining=asyncio.Event())
    pieces = []
    for gate in gates:
        pieces.append(await asyncio.wait_for(anext(body), 5))
        gate.set()
    pieces += await _pieces(body)
    assert pieces == [b"SE", b"EE", b"EE"]
    assert rec.log == ["start:", "TextDelta:a", "TextDelta:b", "TextDelta:c", "TextDelta:d", "Finished"]
    await client.aclose()


async def test_a_lone_frame_goes_out_before_the_next_one_exists() -> None:
    """Nothing waits for company: the first chunk reaches the client while the sidecar holds the second."""
    go = asyncio.Event()

    async def held(writer: asyncio.StreamWriter) -> None:
        _group(writer, Started(model="m"), TextDelta(text="first"))
        await go.wait()
        _group(writer, TextDelta(text="second"), Finished())

    client = _sidecar(held)
    turn = await open_turn(client, _conv(), "b3", commit_after=5.0)
    body = stream_body(turn, Recorder(), heartbeat_sec=5.0, draining=asyncio.Event())
    assert await asyncio.wait_for(anext(body), 5) == b"SE"
    assert not go.is_set()
    go.set()
    assert await _pieces(body) == [b"EE"]
    await client.aclose()


def test_a_bad_length_after_good_frames_comes_after_them() -> None:
    decoder = FrameDecoder(max_frame=100)
    data = pack_frame(b"one") + pack_frame(b"two") + (1000).to_bytes(4, "big")
    assert decoder.feed(data) == [b"one", b"two"]
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"")


def test_one_feed_gives_every_whole_frame_and_keeps_the_rest() -> None:
    decoder = FrameDecoder()
    data = b"".join(pack_frame(bytes([n]) * n) for n in range(1, 6))
    assert decoder.feed(data + data[:3]) == [bytes([n]) * n for n in range(1, 6)]
    assert decoder.buffered == 3
    assert decoder.feed(data[3:]) == [bytes([n]) * n for n in range(1, 6)]
    assert decoder.buffered == 0
