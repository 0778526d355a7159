"""The sidecar's frame bursts over a real Unix socket pair: one write per loop pass, and no frame held back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from common.frames import read_frame
from common.protocol import Finished, TextDelta, decode_reply
from sidecar.streaming import FrameBurst


class CountingWriter(asyncio.StreamWriter):
    """A real stream writer that also records each write it is given."""

    writes: list[bytes]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        super().write(data)


@pytest.fixture
async def ends() -> AsyncIterator[tuple[CountingWriter, asyncio.StreamReader]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, protocol = await loop.create_connection(lambda: asyncio.StreamReaderProtocol(reader), sock=left)
    writer = CountingWriter(transport, protocol, reader, loop)
    writer.writes = []
    peer_reader, peer_writer = await asyncio.open_unix_connection(sock=right)
    yield writer, peer_reader
    writer.close()
    peer_writer.close()


async def _loop_pass() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_frames_of_one_pass_leave_in_one_write(ends: tuple[CountingWriter, asyncio.StreamReader]) -> None:
    writer, peer = ends
    burst = FrameBurst(writer)
    for n in range(5):
        await burst.send(TextDelta(text=f"w{n}"))
    await burst.send(Finished())
    assert writer.writes == []  # nothing leaves before the pass that made the frames ends
    await _loop_pass()
    assert len(writer.writes) == 1
    frames = [decode_reply(await read_frame(peer) or b"") for _ in range(6)]
    assert frames == [*(TextDelta(text=f"w{n}") for n in range(5)), Finished()]


async def test_a_lone_frame_is_not_held_for_company(ends: tuple[CountingWriter, asyncio.StreamReader]) -> None:
    """No timer: a frame goes at the end of its own pass, even if the next one would come soon."""
    writer, peer = ends
    burst = FrameBurst(writer)
    await burst.send(TextDelta(text="first"))
    await _loop_pass()
    assert len(writer.writes) == 1
    assert decode_reply(await read_frame(peer) or b"") == TextDelta(text="first")
    await burst.send(TextDelta(text="second"))
    burst.flush()  # what the end of a turn does
    assert len(writer.writes) == 2
    assert decode_reply(await read_frame(peer) or b"") == TextDelta(text="second")
    await _loop_pass()
    assert len(writer.writes) == 2  # the flush that was already scheduled finds nothing left
