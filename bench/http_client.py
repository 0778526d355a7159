"""A minimal HTTP/1.1 keep-alive client on asyncio streams, used as the load generator.

httpx would work, but on a 2-core machine the load generator competes with the gateway for CPU; this
client costs a fraction of httpx per request, so more of the machine measures the gateway. It speaks
only what the benchmark needs: POST with a JSON body, Content-Length or chunked responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ("HttpConnection", "HttpError", "Response")


class HttpError(Exception):
    """A malformed response or a closed connection."""


class Response:
    __slots__ = ("body", "keep_alive", "status")

    def __init__(self, status: int, body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.body = body
        self.keep_alive = keep_alive


class HttpConnection:
    """One keep-alive connection; reopened transparently after the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def post(self, path: str, body: bytes, arrivals: list[float] | None = None) -> Response:
        """``arrivals``, when given, gets the ``perf_counter`` time each body chunk arrived."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            response = await _read_response(reader, arrivals)
        except (OSError, asyncio.IncompleteReadError, HttpError):
            await self.close()
            raise
        if not response.keep_alive:
            await self.close()
        return response


async def _read_response(reader: asyncio.StreamReader, arrivals: list[float] | None = None) -> Response:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise HttpError("connection closed before a response") from exc
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HttpError(f"bad status line: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        body = await _read_chunked(reader, arrivals)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        raise HttpError("response without a length")
    return Response(int(parts[1]), body, headers.get("connection") != "close")


async def _read_chunked(reader: asyncio.StreamReader, arrivals: list[float] | None = None) -> bytes:
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        if arrivals is not None:
            arrivals.append(time.perf_counter())
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(out)
        out += await reader.readexactly(size + 2)
        del out[-2:]
