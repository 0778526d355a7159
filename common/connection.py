"""One connection from the handlers' client to the sidecar: frames out, and frames in by the burst.

A streamed turn's frames often arrive several to a read (the sidecar writes those made in one loop pass
together), so the connection takes whatever the socket holds and decodes every whole frame in it: one
wake-up and one read per burst instead of two reads per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from common.errors import SidecarUnavailableError
from common.frames import FrameDecoder, FrameError
from common.protocol import Reply, decode_reply

__all__ = ("READ_SIZE", "Connection", "Pulse")

READ_SIZE = 256 * 1024
"""The most one read takes off the socket; a frame larger than this is read in several."""


class Pulse:
    """When the sidecar last sent a frame on any connection (``time.monotonic``): a busy sidecar is not a lost one."""

    __slots__ = ("heard_at",)

    def __init__(self) -> None:
        self.heard_at = 0.0


class Connection:
    """One call at a time: ``exchange`` sends a request and reads its first frame, ``receive_burst`` the rest."""

    __slots__ = ("_decoder", "_frames", "pulse", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pulse: Pulse) -> None:
        self.reader = reader
        self.writer = writer
        self.pulse = pulse
        self._decoder = FrameDecoder()
        self._frames: deque[bytes] = deque()
        """Frames read off the socket and not yet handed out."""

    async def exchange(self, frame: bytes) -> Reply:
        self.writer.write(frame)
        await self.writer.drain()
        return await self.receive()

    async def receive(self) -> Reply:
        """The next frame."""
        if not self._frames:
            await self._fill()
        return decode_reply(self._frames.popleft())

    async def receive_burst(self) -> list[Reply]:
        """Every frame already read (at least one, waiting for it when there is none)."""
        if not self._frames:
            await self._fill()
        replies = [decode_reply(body) for body in self._frames]
        self._frames.clear()
        return replies

    async def _fill(self) -> None:
        while not self._frames:
            try:
                if self._decoder.buffered:  # what is left may already be a whole frame, or a bad length
                    self._frames.extend(self._decoder.feed(b""))
                    if self._frames:
                        break
                data = await self.reader.read(READ_SIZE)
                if not data:
                    self._decoder.close()
                    raise SidecarUnavailableError("the sidecar closed the connection")
                self._frames.extend(self._decoder.feed(data))
            except (FrameError, OSError) as exc:
                raise SidecarUnavailableError(f"the sidecar connection broke: {exc}") from None
        self.pulse.heard_at = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    @property
    def usable(self) -> bool:
        idle = not self._frames and not self._decoder.buffered
        return idle and not self.writer.is_closing() and not self.reader.at_eof()
