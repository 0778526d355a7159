"""How the handlers' client reaches the sidecar: its Unix socket, or a server object in the same process.

Either way the client gets an asyncio stream pair and every frame goes through ``pack_frame``/``read_frame``
on both sides, so the wire format is exercised even in process. The in-process transport joins the two
stream pairs with an in-memory pipe and runs the server's connection handler (the same coroutine a Unix
server would run per connection) as a task; it knows nothing of what that handler serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

__all__ = ("ConnectionHandler", "InProcessTransport", "Transport", "UnixTransport")

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""A server's per-connection coroutine, as ``asyncio.start_unix_server`` takes it."""


class Transport(Protocol):
    def connect(self) -> Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """Open one connection to the sidecar; ``OSError`` when it cannot be reached."""
        ...

    def describe(self) -> str:
        """Where the sidecar is, for log lines (never a secret)."""
        ...


class UnixTransport:
    """The sidecar's Unix socket."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path)

    def describe(self) -> str:
        return self.path


class _PipeEnd(asyncio.Transport):
    """One end of an in-memory pipe: what this end writes, the other end's protocol receives at once.

    Closing either end closes both, as a socket connection does: each side's reader sees EOF, and a later
    ``drain()`` raises ``ConnectionResetError``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._closing = False
        self.peer: _PipeEnd | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        peer = self.peer
        if self._closing or peer is None or peer._closing or not data:
            return
        peer._protocol.data_received(bytes(data))

    def close(self) -> None:
        for end in (self, self.peer):
            if end is not None and not end._closing:
                end._closing = True
                self._loop.call_soon(end._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._closing

    def pause_reading(self) -> None:
        """Nothing to pause: bytes are handed over as they are written."""

    def resume_reading(self) -> None:
        """Nothing to resume."""

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _pipe(loop: asyncio.AbstractEventLoop) -> tuple[_Streams, _Streams]:
    """Two stream pairs joined back to back: what one writer writes, the other reader reads."""
    streams: list[_Streams] = []
    ends: list[_PipeEnd] = []
    for _ in range(2):
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        end = _PipeEnd(loop, protocol)
        protocol.connection_made(end)
        streams.append((reader, asyncio.StreamWriter(end, protocol, reader, loop)))
        ends.append(end)
    ends[0].peer, ends[1].peer = ends[1], ends[0]
    return streams[0], streams[1]


class InProcessTransport:
    """Each connection runs ``serve(reader, writer)`` in this event loop, over an in-memory pipe."""

    def __init__(self, serve: ConnectionHandler, *, name: str = "in-process sidecar") -> None:
        self._serve = serve
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_served = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        (client_reader, client_writer), (server_reader, server_writer) = _pipe(loop)
        task = loop.create_task(self._run(server_reader, server_writer), name=f"{self._name} connection")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.connections_served += 1
        return client_reader, client_writer

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()

    def describe(self) -> str:
        return self._name

    async def aclose(self) -> None:
        """Cancel the connections still being served and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
