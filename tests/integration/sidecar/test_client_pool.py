"""The pooled client against small real-socket peers: what is reused, what is closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.client import SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.errors import GatewayError, UpstreamError
from common.frames import pack_frame, read_frame
from common.protocol import (
    PROTOCOL_MAJOR,
    Complete,
    Failed,
    HelloOk,
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
