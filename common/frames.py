"""Length-prefixed msgpack frames: a 4-byte big-endian length, then the body.

The cap is checked before the body is read, so a corrupt or hostile length never allocates.
"""

from __future__ import annotations

import asyncio

__all__ = (
    "MAX_FRAME",
    "FrameDecoder",
    "FrameError",
    "FrameTooLargeError",
    "TruncatedFrameError",
    "pack_frame",
    "read_frame",
)

MAX_FRAME = 64 * 1024 * 1024
_HEADER = 4


class FrameError(Exception):
    """A frame that cannot be read; the connection must be dropped."""


class FrameTooLargeError(FrameError):
    pass


class TruncatedFrameError(FrameError):
    pass


def pack_frame(body: bytes, *, max_frame: int = MAX_FRAME) -> bytes:
    if len(body) > max_frame:
        raise FrameTooLargeError(f"frame of {len(body)} bytes exceeds the {max_frame} byte cap")
    return len(body).to_bytes(_HEADER, "big") + body


async def read_frame(reader: asyncio.StreamReader, *, max_frame: int = MAX_FRAME, carried: bytes = b"") -> bytes | None:
    """Read one frame body; ``None`` on a clean EOF between frames.

    ``carried`` holds bytes of this frame's header that were already taken off the stream (the sidecar's EOF
    watcher reads one byte while a turn streams, and that byte may be the start of the next request).
    """
    try:
        header = carried + await reader.readexactly(_HEADER - len(carried))
    except asyncio.IncompleteReadError as exc:
        if not exc.partial and not carried:
            return None
        raise TruncatedFrameError("connection closed inside a frame header") from exc
    size = int.from_bytes(header, "big")
    if size > max_frame:
        raise FrameTooLargeError(f"frame of {size} bytes exceeds the {max_frame} byte cap")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise TruncatedFrameError(f"connection closed after {len(exc.partial)} of {size} bytes") from exc


class FrameDecoder:
    """Incremental decoder for callers that receive bytes in arbitrary pieces.

    One ``feed`` returns every frame the bytes complete, so a reader that takes whatever the socket holds
    handles a burst of frames in one pass; consumed bytes are dropped once per call, not once per frame.
    A bad length after good frames is raised by the next call (``feed(b"")`` will do), after those frames.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= _HEADER:
            size = int.from_bytes(buf[pos : pos + _HEADER], "big")
            if size > self._max:
                if out:  # the frames before it first; the next call raises
                    break
                raise FrameTooLargeError(f"frame of {size} bytes exceeds the {self._max} byte cap")
            stop = pos + _HEADER + size
            if stop > end:
                break
            out.append(bytes(buf[pos + _HEADER : stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return out

    def close(self) -> None:
        """Declare the end of input; leftover bytes mean a truncated frame."""
        if self._buf:
            raise TruncatedFrameError(f"{len(self._buf)} bytes of an unfinished frame at end of input")
