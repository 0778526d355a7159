"""The in-process transport: a real SidecarServer behind an in-memory pipe, every frame through the codec."""

from __future__ import annotations

import asyncio
import os

import pytest

from common.client import InProcessTransport, SidecarClient, UnixTransport
from common.conversation import Conversation, Message, TextPart
from common.errors import NoCapacityError, SidecarUnavailableError
from common.frames import pack_frame, read_frame
from common.protocol import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Complete,
    Failed,
    Finished,
    Hello,
    HelloOk,
    Started,
    TextDelta,
    decode_reply,
    decode_request,
    encode,
)
from tests.support.inprocess import scripted_sidecar

SCRIPT = {
    "turns": [
        {
            "match": "two words",
            "events": [{"t": "text", "text": "one "}, {"t": "text", "text": "two"}, {"t": "finished"}],
        },
        {"match": "slowly", "events": [{"t": "text", "text": "a"}, {"t": "sleep", "ms": 5000}, {"t": "finished"}]},
        {"match": "refuse", "events": [{"t": "failed", "code": "rate_limited", "message": "busy", "retry_after_s": 3}]},
    ]
}


def conv(text: str) -> Conversation:
    return Conversation(model="m", messages=[Message(role="user", content=[TextPart(text)])])


async def test_a_turn_round_trips_through_the_server() -> None:
    side = scripted_sidecar(SCRIPT)
    try:
        async with side.client.stream(Complete(conversation=conv("two words"))) as events:
            got = [e async for e in events]
    finally:
        await side.aclose()
    assert isinstance(got[0], Started)
    assert [e.text for e in got if isinstance(e, TextDelta)] == ["one ", "two"]
    assert isinstance(got[-1], Finished)


async def test_unary_calls_and_one_reused_connection() -> None:
    side = scripted_sidecar(SCRIPT)
    try:
        pong = await side.client.ping()
        models = await side.client.models()
        assert await side.client.count_tokens(conv("a b c")) == 3
    finally:
        await side.aclose()
    assert pong.ready and pong.instances_ready == 1
    assert [m.key for m in models] == ["scripted"]
    assert side.transport.connections_served == 1
    assert side.client.connections_opened == 1


async def test_a_failed_turn_ends_with_its_failed_frame_and_keeps_the_connection() -> None:
    side = scripted_sidecar(SCRIPT)
    try:
        async with side.client.stream(Complete(conversation=conv("refuse"))) as events:
            got = [e async for e in events]
        await side.client.ping()
    finally:
        await side.aclose()
    assert isinstance(got[0], Started)
    assert got[-1] == Failed(code="rate_limited", message="busy", retry_after_s=3)
    assert side.client.connections_opened == 1


async def test_a_draining_server_refuses_a_turn_with_its_error() -> None:
    side = scripted_sidecar(SCRIPT)
    await side.client.ping()
    await side.server.drain()
    with pytest.raises(NoCapacityError, match="shutting down"):
        async with side.client.stream(Complete(conversation=conv("two words"))):
            pass
    await side.aclose()


async def test_the_server_reads_codec_frames_and_answers_the_handshake() -> None:
    """Bytes written by a client are what pack_frame makes, and the server's answer decodes with read_frame."""
    side = scripted_sidecar(SCRIPT)
    try:
        reader, writer = await side.transport.connect()
        writer.write(pack_frame(encode(Hello(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR))))
        await writer.drain()
        body = await read_frame(reader)
        assert body is not None
        hello = decode_reply(body)
        assert isinstance(hello, HelloOk)
        assert (hello.major, hello.minor, hello.pid) == (PROTOCOL_MAJOR, PROTOCOL_MINOR, os.getpid())
        writer.write(b"\x00\x00\x00\x03abc")  # a frame that is no request: answered, the connection kept
        await writer.drain()
        body = await read_frame(reader)
        assert body is not None
        reply = decode_reply(body)
        assert isinstance(reply, Failed) and reply.code == "bad_request"
        writer.close()
        await writer.wait_closed()
    finally:
        await side.aclose()


async def test_a_first_frame_other_than_hello_is_refused() -> None:
    side = scripted_sidecar(SCRIPT)
    try:
        reader, writer = await side.transport.connect()
        writer.write(pack_frame(encode(Complete(conversation=conv("x")))))
        await writer.drain()
        body = await read_frame(reader)
        assert body is not None
        reply = decode_reply(body)
        assert isinstance(reply, Failed) and reply.code == "protocol"
        assert await read_frame(reader) is None  # then the server hangs up
    finally:
        await side.aclose()


async def test_leaving_a_stream_early_cancels_the_turn_in_the_server() -> None:
    side = scripted_sidecar(SCRIPT)
    try:
        async with side.client.stream(Complete(conversation=conv("slowly"))) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    break
        for _ in range(200):
            if side.stats.requests["cancelled_by_client"]:
                break
            await asyncio.sleep(0.01)
        assert side.stats.requests["cancelled_by_client"] == 1
        assert side.admission.in_flight == 0
        await side.client.ping()  # a new connection: the broken one was not pooled
        assert side.client.connections_opened == 2
    finally:
        await side.aclose()


async def test_a_server_that_hangs_up_is_unavailable_not_a_hang() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.close()

    client = SidecarClient(InProcessTransport(hang_up))
    with pytest.raises(SidecarUnavailableError):
        await client.ping()


async def test_closing_one_end_is_eof_for_the_other_and_resets_its_writes() -> None:
    seen: list[bytes | None] = []
    done = asyncio.Event()

    async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await read_frame(reader)
        seen.append(body)
        seen.append(await read_frame(reader))  # the client closed: a clean EOF between frames
        writer.write(b"late")
        with pytest.raises(ConnectionResetError):
            await writer.drain()
        done.set()

    transport = InProcessTransport(echo_once)
    reader, writer = await transport.connect()
    writer.write(pack_frame(b"payload"))
    writer.close()
    await asyncio.wait_for(done.wait(), 2)
    assert seen == [b"payload", None]
    assert reader.at_eof() or await reader.read() == b""
    await transport.aclose()


async def test_a_missing_socket_is_unavailable() -> None:
    client = SidecarClient(UnixTransport("/nonexistent/lingma-gateway.sock"))
    with pytest.raises(SidecarUnavailableError):
        await client.ping()
    assert decode_request(encode(Hello(major=1, minor=0))) == Hello(major=1, minor=0)
