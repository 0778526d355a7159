"""The least a process of each shape costs on this machine, measured in the same run as the figures above it.

A streamed chunk costs each process at least a wake-up, a read and a write (the sidecar also answers the
push), and on a virtual machine the wake-up of another process is most of it. Three bare programs show where
that floor lies, so a per-chunk or per-turn figure reads as a ratio to what no code on this machine can beat:

- ``relay handler``: a uvloop process that only moves each message on (an ``asyncio.Protocol``, no parsing),
  a Unix socket in and a TCP loopback connection out, as serve sits between the sidecar and the client;
- ``relay sidecar``: TCP in, a reply to each message on it, a Unix socket out, as the sidecar sits between
  Lingma and serve;
- ``route``: a bare Litestar app, one streaming POST route, under uvicorn with uvloop and httptools, one
  request at a time on one keep-alive connection: the framework's own cost per streamed request.

A paced sender sends one message at a time with a pause, as the simulator sends each chunk in its own
message. Each program runs in its own process (``python -m bench.floor relay handler``) and prints JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import cast

__all__ = ("floor_ratios", "measure_floors")

MESSAGES = 5000
REQUESTS = 1000
_PACE_S = 0.0002
_END = b"END"


def measure_floors(messages: int = MESSAGES, requests: int = REQUESTS) -> dict[str, float]:
    """Each floor from its own child process: µs per message for the relays, ms per request for the route."""
    out: dict[str, float] = {}
    for name, args in (
        ("relay_handler_us_per_message", ["relay", "handler", str(messages)]),
        ("relay_sidecar_us_per_message", ["relay", "sidecar", str(messages)]),
        ("route_ms_per_request", ["route", str(requests)]),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "bench.floor", *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"floor {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
        out[name] = float(json.loads(done.stdout)["value"])
    return out


def floor_ratios(processes: dict[str, dict[str, float]], floor: dict[str, float]) -> dict[str, float | None]:
    """Each process's streaming figure over the floor of its shape (None where a figure is missing)."""

    def ratio(value: float | None, base: float) -> float | None:
        return round(value / base, 2) if value is not None and base > 0 else None

    http, sidecar = processes.get("http", {}), processes.get("sidecar", {})
    return {
        "http_per_chunk": ratio(http.get("us_per_chunk"), floor["relay_handler_us_per_message"]),
        "sidecar_per_chunk": ratio(sidecar.get("us_per_chunk"), floor["relay_sidecar_us_per_message"]),
        "http_per_turn": ratio(http.get("ms_per_turn"), floor["route_ms_per_request"]),
    }


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def _sender(sock: socket.socket, messages: int, *, replies: bool) -> None:
    message = b"x" * 150
    for _ in range(messages):
        sock.sendall(message)
        if replies:
            sock.recv(4096)
        time.sleep(_PACE_S)
    sock.sendall(_END)


def _sink(sock: socket.socket) -> None:
    while True:
        data = sock.recv(65536)
        if not data or data.endswith(_END):
            return


def _child(work: Callable[[], object]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            work()
        finally:
            os._exit(0)
    return pid


class _Relay(asyncio.Protocol):
    """Moves each message on as it comes, answering it first in the sidecar's shape: nothing else."""

    def __init__(self, out: asyncio.BaseTransport, done: asyncio.Future[None], *, reply: bool) -> None:
        self._out = cast(asyncio.WriteTransport, out)
        self._done = done
        self._reply = reply
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        if self._reply and self._transport is not None:
            self._transport.write(b"ok")
        self._out.write(data)
        if data.endswith(_END) and not self._done.done():
            self._done.set_result(None)


def _relay(shape: str, messages: int) -> float:
    """The children are forked before the event loop exists, so they carry none of it."""
    import uvloop

    sidecar = shape == "sidecar"
    inbound, sender_end = _tcp_pair() if sidecar else socket.socketpair()
    outbound, sink_end = socket.socketpair() if sidecar else _tcp_pair()
    children = [_child(lambda: _sender(sender_end, messages, replies=sidecar)), _child(lambda: _sink(sink_end))]
    sender_end.close()
    sink_end.close()
    try:
        return uvloop.run(_pump(inbound, outbound, messages, reply=sidecar))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


async def _pump(inbound: socket.socket, outbound: socket.socket, messages: int, *, reply: bool) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    out, _ = await loop.create_connection(asyncio.Protocol, sock=outbound)
    started = time.process_time()
    await loop.create_connection(lambda: _Relay(out, done, reply=reply), sock=inbound)
    await asyncio.wait_for(done, 60)
    return (time.process_time() - started) / messages * 1e6


def _serve_route(sock: socket.socket) -> None:
    import uvicorn

    from bench.floor_app import app

    config = uvicorn.Config(app, log_level="warning", access_log=False, loop="uvloop", http="httptools")
    uvicorn.Server(config).run(sockets=[sock])


def _route(requests: int) -> float:
    from bench.cpu import task_cpu_ns

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    server = _child(lambda: _serve_route(listener))
    listener.close()
    # The child holds the listening socket from before the fork, so a connect queues until uvicorn accepts it.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    headers = {"Content-Type": "application/json"}

    def one() -> None:
        conn.request("POST", "/v1/chat/completions", body, headers)
        response = conn.getresponse()
        if response.status != 200 or not response.read().endswith(b"[DONE]\n\n"):
            raise RuntimeError(f"the bare route answered {response.status}")

    try:
        for _ in range(max(50, requests // 10)):
            one()
        before = task_cpu_ns(server)
        for _ in range(requests):
            one()
        return (task_cpu_ns(server) - before) / requests / 1e6
    finally:
        conn.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGTERM)
        os.waitpid(server, 0)


def main(argv: list[str]) -> int:
    if argv[:1] == ["relay"] and len(argv) == 3 and argv[1] in ("handler", "sidecar"):
        value = _relay(argv[1], int(argv[2]))
    elif argv[:1] == ["route"] and len(argv) == 2:
        value = _route(int(argv[1]))
    else:
        print("usage: python -m bench.floor relay handler|sidecar N | route N", file=sys.stderr)
        return 2
    print(json.dumps({"value": round(value, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
