"""Content-Length framing inside WebSocket text messages, written apart from the gateway's and simulator's.

The baseline must not share code with the thing it is compared to, so this is a third, minimal copy:
frames may arrive packed several to a message or split across messages, hence the byte buffer.
"""

from __future__ import annotations

__all__ = ("FrameBuffer", "frame")

_SEP = b"\r\n\r\n"


def frame(body: bytes) -> str:
    """One framed message; the length counts UTF-8 bytes."""
    return f"Content-Length: {len(body)}\r\n\r\n{body.decode()}"


class FrameBuffer:
    """Feed WebSocket payloads in; take complete JSON bodies out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: str | bytes) -> list[bytes]:
        self._buf += data.encode() if isinstance(data, str) else data
        bodies: list[bytes] = []
        buf = self._buf
        while True:
            end = buf.find(_SEP)
            if end < 0:
                return bodies
            length = -1
            for line in bytes(buf[:end]).split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length < 0:
                raise ValueError(f"frame without Content-Length: {bytes(buf[:80])!r}")
            start = end + len(_SEP)
            if len(buf) - start < length:
                return bodies
            bodies.append(bytes(buf[start : start + length]))
            del buf[: start + length]
