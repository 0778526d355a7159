"""The pooled client against small real-socket peers: what is reused, what is closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.client import SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.errors import GatewayError, SidecarUnavailableError, UpstreamError
from common.frames import pack_frame, read_frame
from common.protocol import (
    PROTOCOL_MAJOR,
    Complete,
    Failed,
    Finished,
    HelloOk,
    Pong,
    Started,
    TextDelta,
    decode_request,
    encode,
)

OP = Complete(conversation=Conversation(model="m", messages=[Message(role="user", content=[TextPart("x")])]))


async def serve(path: Path, script: list[bytes]) -> asyncio.Server:
    """A peer that answers the handshake, then writes ``script`` for every request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
        while (body := await read_frame(reader)) is not None:
            decode_request(body)
            for chunk in script:
                writer.write(chunk)
            await writer.drain()

    return await asyncio.start_unix_server(handle, path=str(path))


async def test_a_stream_broken_by_a_bad_frame_is_not_pooled(short_dir: Path) -> None:
    script = [pack_frame(encode(Started(model="m"))), (2**31).to_bytes(4, "big")]
    async with await serve(short_dir / "a.sock", script):
        client = SidecarClient(short_dir / "a.sock")
        for expected_opened in (1, 2):
            async with client.stream(OP) as events:
                got = [e async for e in events]
            assert isinstance(got[-1], Failed) and got[-1].code == "sidecar_unavailable"
            assert client.connections_opened == expected_opened
        await client.aclose()


async def test_a_failed_turn_read_to_its_terminal_keeps_the_connection(short_dir: Path) -> None:
    script = [pack_frame(encode(f)) for f in (Started(model="m"), TextDelta(text="a"), Failed(code="upstream_error", message="x"))]  # fmt: skip
    async with await serve(short_dir / "b.sock", script):
        client = SidecarClient(short_dir / "b.sock")
        for _ in range(3):
            with pytest.raises(UpstreamError):
                async with client.stream(OP) as events:
                    async for event in events:
                        if isinstance(event, Failed):
                            raise GatewayError.carrying(event)
        assert client.connections_opened == 1
        await client.aclose()


async def test_a_cancelled_request_closes_its_connection(short_dir: Path) -> None:
    """A peer that never answers: the waiting call is cancelled and its socket closed, not left to the GC."""
    closed = asyncio.Event()
    asked = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
        await read_frame(reader)
        asked.set()
        if await reader.read() == b"":
            closed.set()

    async with await asyncio.start_unix_server(handle, path=str(short_dir / "c.sock")):
        client = SidecarClient(short_dir / "c.sock")
        task = asyncio.create_task(client.ping())
        await asyncio.wait_for(asked.wait(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 2)


async def test_the_request_goes_out_with_the_handshake(short_dir: Path) -> None:
    """A new connection does not wait for ``HelloOk`` before sending its request: the peer gets both first."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            body = await read_frame(reader)
            assert body is not None
            seen.append(type(decode_request(body)).__name__)
        writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
        writer.write(pack_frame(encode(Pong(ready=True, instances_ready=1))))
        await writer.drain()
        await reader.read()

    async with await asyncio.start_unix_server(handle, path=str(short_dir / "d.sock")):
        client = SidecarClient(short_dir / "d.sock")
        assert (await client.ping()).ready
        assert seen == ["Hello", "Ping"]
        await client.aclose()


async def _stream_until(stop: asyncio.Event, writer: asyncio.StreamWriter) -> None:
    """Answer the handshake, then keep a stream flowing until ``stop``: a sidecar visibly alive."""
    writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
    while not stop.is_set():
        writer.write(pack_frame(encode(TextDelta(text="."))))
        await writer.drain()
        await asyncio.sleep(0.02)
    writer.write(pack_frame(encode(Finished())))
    await writer.drain()


async def test_a_slow_handshake_is_waited_for_while_the_sidecar_answers_others(short_dir: Path) -> None:
    """A sidecar busy with other connections is not a lost one, however long one handshake takes."""
    busy = asyncio.Event()
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        first = await read_frame(reader)
        assert first is not None
        if not busy.is_set():  # the first connection: a stream that keeps sending
            busy.set()
            await _stream_until(stop, writer)
        else:  # the second: its handshake waits for five of the client's connect timeouts
            await asyncio.sleep(0.5)
            writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR, minor=0))))
            writer.write(pack_frame(encode(Pong(ready=True, instances_ready=1))))
        await writer.drain()
        await reader.read()

    async with await asyncio.start_unix_server(handle, path=str(short_dir / "e.sock")):
        client = SidecarClient(short_dir / "e.sock", connect_timeout=0.1)

        async def read_stream() -> list[object]:
            async with client.stream(OP) as events:
                return [e async for e in events]

        reading = asyncio.create_task(read_stream())
        await busy.wait()
        assert (await client.ping()).ready
        stop.set()
        assert isinstance((await reading)[-1], Finished)
        await client.aclose()


async def test_a_handshake_is_given_up_on_in_the_end_while_old_streams_still_flow(short_dir: Path) -> None:
    """A sidecar whose old streams flow but which never answers a new connection is unavailable, not a hang."""
    busy = asyncio.Event()
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        await read_frame(reader)
        if not busy.is_set():  # the first connection: a stream that keeps sending
            busy.set()
            await _stream_until(stop, writer)
        await reader.read()  # the second: never answered

    async with await asyncio.start_unix_server(handle, path=str(short_dir / "f.sock")):
        client = SidecarClient(short_dir / "f.sock", connect_timeout=0.1, handshake_timeout=0.5)

        async def read_stream() -> list[object]:
            async with client.stream(OP) as events:
                return [e async for e in events]

        reading = asyncio.create_task(read_stream())
        await busy.wait()
        async with asyncio.timeout(10):  # without the cap this would wait as long as the stream flows
            with pytest.raises(SidecarUnavailableError):
                await client.ping()
        stop.set()
        assert isinstance((await reading)[-1], Finished)
        await client.aclose()


async def test_a_sidecar_that_answers_nothing_is_unavailable(short_dir: Path) -> None:
    """A hung sidecar (its socket accepts, nothing answers) is a 503, not a request left hanging."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with await asyncio.start_unix_server(handle, path=str(short_dir / "f.sock")):
        client = SidecarClient(short_dir / "f.sock", connect_timeout=0.1)
        with pytest.raises(SidecarUnavailableError):
            await client.ping()
        await client.aclose()


async def test_a_missing_socket_is_unavailable_at_once(short_dir: Path) -> None:
    client = SidecarClient(short_dir / "nobody.sock", connect_timeout=3600)
    with pytest.raises(SidecarUnavailableError):  # the refusal answers, not the (hour-long) timeout
        await client.ping()
