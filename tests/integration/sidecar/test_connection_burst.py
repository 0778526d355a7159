"""A burst of new connections to a real sidecar subprocess: every one is accepted and handshaken.

Streams that open at once each dial their own connection. Past the listen backlog a Unix-socket connect
fails at once, and a handler that took a slow handshake for a lost sidecar would answer 503 to clients of a
sidecar that is only busy.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from common.client import SidecarClient
from common.conversation import Conversation, Message, TextPart
from common.frames import pack_frame
from common.protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR, Complete, Finished, Hello, HelloOk, decode_reply, encode

BURST = 300


def _script(tmp: Path) -> Path:
    path = tmp / "script.json"
    turn = {"match": "quick", "events": [{"t": "text", "text": "b"}, {"t": "text", "text": "c"}]}
    path.write_text(json.dumps({"turns": [turn]}))
    return path


def _recv_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole frame")
        data += chunk
    return data[4:]


def test_connections_opened_all_at_once_are_all_accepted_and_answered(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(_script(short_dir))])
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(BURST)]
    try:
        # Non-blocking connects in a tight loop: they queue in the backlog faster than the sidecar accepts.
        refused = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                sock.connect(str(side.socket))
            except BlockingIOError:
                refused += 1
        assert refused == 0, f"{refused} of {BURST} connects found the listen backlog full"
        hello = pack_frame(encode(Hello(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR)))
        for sock in socks:
            sock.setblocking(True)
            sock.settimeout(30)
            sock.sendall(hello)
        replies = [decode_reply(_recv_frame(sock)) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(isinstance(r, HelloOk) and r.pid == side.proc.pid for r in replies)


async def test_streams_opened_all_at_once_all_finish(sidecar_factory, short_dir: Path) -> None:
    side = sidecar_factory(["--script", str(_script(short_dir))], {"GATEWAY_MAX_IN_FLIGHT": str(BURST * 2)})
    # The liveness rule for slow handshakes has its own tests (test_client_pool.py); here a loaded machine must
    # not turn a second of sidecar silence into a failure of what this test is about.
    client = SidecarClient(side.socket, connect_timeout=10)
    op = Complete(conversation=Conversation(model="m", messages=[Message(role="user", content=[TextPart("quick")])]))
    started = asyncio.Event()

    async def one() -> list[str]:
        await started.wait()
        async with client.stream(op) as events:
            return [type(e).__name__ async for e in events]

    tasks = [asyncio.create_task(one()) for _ in range(BURST)]
    await asyncio.sleep(0)
    started.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {BURST} streams failed, first: {failures[0]!r}"
    assert all(r[-1] == Finished.__name__ for r in results if isinstance(r, list))
    assert client.connections_opened == BURST
