"""The sidecar over its real Unix socket, driven by the scripted backend in a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.client import SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.errors import ProtocolVersionError, SidecarUnavailableError
from common.frames import pack_frame, read_frame
from common.protocol import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Complete,
    Failed,
    Finished,
    Hello,
    HelloOk,
    Ping,
    Pong,
    TextDelta,
    decode_reply,
    encode,
)
from common.stats import InstanceState, StatsReport
from tests.conftest import wait_for


def convo(text: str) -> Complete:
    return Complete(conversation=Conversation(model="m", messages=[Message(role="user", content=[TextPart(text)])]))


def script(tmp: Path) -> Path:
    path = tmp / "script.json"
    path.write_text(
        json.dumps(
            {
                "turns": [
                    {"match": "slow", "events": [{"t": "text", "text": "a"}, {"t": "sleep", "ms": 20000}]},
                    {"match": "quick", "events": [{"t": "text", "text": "b"}, {"t": "text", "text": "c"}]},
                ]
            }
        )
    )
    return path


async def stats(client: SidecarClient) -> StatsReport:
    return await client.stats()


async def test_connection_is_reused_only_after_its_terminal_frame(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    client = SidecarClient(side.socket)
    for _ in range(3):
        async with client.stream(convo("quick")) as events:
            got = [e async for e in events]
        assert [type(e).__name__ for e in got] == ["Started", "TextDelta", "TextDelta", "Finished"]
    assert client.connections_opened == 1

    # A consumer that stops before the terminal frame must not hand its connection back.
    async with client.stream(convo("quick")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break
    async with client.stream(convo("quick")) as events:
        assert isinstance([e async for e in events][-1], Finished)
    assert client.connections_opened == 2
    await client.aclose()


async def test_early_stop_closes_the_connection_and_the_sidecar_cancels_its_producer(
    sidecar_factory, short_dir: Path
) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    client = SidecarClient(side.socket)
    before = await stats(client)
    assert before.requests.get("cancelled", 0) == 0
    async with client.stream(convo("slow")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break
    probe = SidecarClient(side.socket)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = await stats(probe)
        if after.requests.get("cancelled", 0) == 1:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the sidecar never cancelled the producer: {after}")
    assert after.backpressure.in_flight == 0
    await client.aclose()
    await probe.aclose()


async def test_socket_mode_is_owner_only(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    mode = stat.S_IMODE(os.stat(side.socket).st_mode)
    assert mode == 0o600


def test_second_sidecar_on_the_same_socket_refuses(sidecar_factory, short_dir: Path) -> None:
    first = sidecar_factory(["--script", str(script(short_dir))])
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar",
            "--data-dir",
            str(first.data_dir),
            "--socket",
            str(first.socket),
            "--script",
            str(script(short_dir)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 3
    assert "already serving" in second.stderr
    assert first.proc.poll() is None
    assert socket.socket(socket.AF_UNIX).connect_ex(str(first.socket)) == 0


def test_stale_socket_from_a_killed_sidecar_is_replaced(sidecar_factory, short_dir: Path) -> None:
    first = sidecar_factory(["--script", str(script(short_dir))])
    first.kill()
    assert first.socket.exists()  # SIGKILL leaves the file behind
    second = sidecar_factory(["--script", str(script(short_dir))])
    assert second.ready()


@pytest.mark.parametrize("leave_file", [False, True])
async def test_dead_socket_is_sidecar_unavailable_within_a_second(short_dir: Path, leave_file: bool) -> None:
    path = short_dir / "dead.sock"
    if leave_file:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()  # a socket file with nobody listening
    client = SidecarClient(path)
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(SidecarUnavailableError):
            await client.ping()
        with pytest.raises(SidecarUnavailableError):
            async with client.stream(convo("x")):
                pass
        assert time.monotonic() - started < 1.0


async def _hello(path: Path, major: int, minor: int) -> object:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(pack_frame(encode(Hello(major=major, minor=minor))))
    await writer.drain()
    body = await read_frame(reader)
    writer.close()
    assert body is not None
    return decode_reply(body)


async def test_a_different_major_fails_loudly_naming_both_versions(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    reply = await _hello(side.socket, PROTOCOL_MAJOR + 1, 0)
    assert isinstance(reply, Failed)
    assert reply.code == "protocol"
    assert f"{PROTOCOL_MAJOR + 1}.0" in reply.message
    assert f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}" in reply.message
    assert "incompatible" in side.log.read_text()


async def test_a_handler_of_protocol_1_2_is_refused_naming_both_versions(sidecar_factory, short_dir: Path) -> None:
    """2.0 typed the stats frame; a 1.2 handler would misread it, so the handshake refuses it and says why."""
    assert (PROTOCOL_MAJOR, PROTOCOL_MINOR) == (2, 1)
    side = sidecar_factory(["--script", str(script(short_dir))])
    reply = await _hello(side.socket, 1, 2)
    assert isinstance(reply, Failed) and reply.code == "protocol"
    assert "handler protocol 1.2 is incompatible with sidecar protocol 2.1" in reply.message


async def test_a_sidecar_of_protocol_1_2_is_refused_by_the_client_naming_both_versions(short_dir: Path) -> None:
    path = short_dir / "old.sock"

    async def old_sidecar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(pack_frame(encode(HelloOk(major=1, minor=2))))
        await writer.drain()

    server = await asyncio.start_unix_server(old_sidecar, path=str(path))
    async with server:
        with pytest.raises(ProtocolVersionError) as info:
            await SidecarClient(path).stats()
    assert info.value.message == "sidecar protocol 1.2 is incompatible with handler protocol 2.1"


async def test_a_newer_minor_is_accepted(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    reply = await _hello(side.socket, PROTOCOL_MAJOR, PROTOCOL_MINOR + 7)
    assert isinstance(reply, HelloOk)


async def test_client_raises_protocol_error_on_major_mismatch(short_dir: Path) -> None:
    """The client side of the check: a sidecar that speaks another major is refused by the handler."""
    path = short_dir / "fake.sock"

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(pack_frame(encode(HelloOk(major=PROTOCOL_MAJOR + 1, minor=0))))
        await writer.drain()

    server = await asyncio.start_unix_server(fake, path=str(path))
    async with server:
        with pytest.raises(ProtocolVersionError) as info:
            await SidecarClient(path).ping()
    assert f"{PROTOCOL_MAJOR + 1}.0" in info.value.message
    assert f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}" in info.value.message


async def test_stats_arrive_typed_over_the_socket(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    client = SidecarClient(side.socket)
    async with client.stream(convo("quick")) as events:
        assert isinstance([e async for e in events][-1], Finished)
    snap = await stats(client)
    await client.aclose()
    assert isinstance(snap, StatsReport) and snap.version == 1
    assert snap.backpressure.in_flight == 0 and snap.backpressure.in_flight_max == 1
    assert snap.requests["started"] == 1 and snap.requests["finished"] == 1
    [inst] = snap.pool.instances
    assert (inst.id, inst.state, inst.served_total) == ("scripted", InstanceState.READY, 1)
    assert inst.cooldown_until is None and inst.last_error is None


def test_sigterm_drains_and_removes_the_socket(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(script(short_dir))])
    assert side.stop() == 0
    wait_for(lambda: not side.socket.exists(), 5, what="socket removal")


async def test_an_unknown_operation_is_answered_and_the_connection_kept(sidecar_factory, short_dir: Path) -> None:
    """A newer handler's new operation gets a Failed reply, as a rolling upgrade needs, not a dropped socket."""
    import msgspec

    side = sidecar_factory(["--script", str(script(short_dir))])
    reader, writer = await asyncio.open_unix_connection(str(side.socket))
    writer.write(pack_frame(encode(Hello(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR + 1))))
    writer.write(pack_frame(msgspec.msgpack.encode({"op": "a_future_operation", "x": 1})))
    writer.write(pack_frame(encode(Ping())))
    await writer.drain()
    replies = [decode_reply(await read_frame(reader)) for _ in range(3)]  # type: ignore[arg-type]
    writer.close()
    assert isinstance(replies[0], HelloOk)
    assert isinstance(replies[1], Failed) and replies[1].code == "bad_request"
    assert isinstance(replies[2], Pong)


async def test_a_request_right_after_a_terminal_is_never_lost(sidecar_factory, short_dir: Path) -> None:
    """While a turn streams, the sidecar watches the socket for EOF by reading a byte; when the handler's next
    request arrives right after the terminal, that byte belongs to the next frame and must not be dropped."""
    side = sidecar_factory(["--script", str(script(short_dir))])

    async def worker(rounds: int) -> int:
        reader, writer = await asyncio.open_unix_connection(str(side.socket))
        writer.write(pack_frame(encode(Hello(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR))))
        await read_frame(reader)
        for _ in range(rounds):
            writer.write(pack_frame(encode(convo("quick"))))
            while not isinstance(decode_reply(await read_frame(reader)), (Finished, Failed)):  # type: ignore[arg-type]
                pass
            writer.write(pack_frame(encode(Ping())))  # at once, while the turn's EOF watcher may still run
            try:
                async with asyncio.timeout(5):
                    assert isinstance(decode_reply(await read_frame(reader)), Pong)  # type: ignore[arg-type]
            except TimeoutError:
                writer.close()
                return 1
        writer.close()
        return 0

    stalls = await asyncio.gather(*(worker(300) for _ in range(32)))
    assert sum(stalls) == 0
