"""Content-Length framing of JSON-RPC messages carried inside WebSocket messages.

Lingma frames every message LSP-style even inside WebSocket text messages, and peers pack several
frames into one message or split one frame across messages, so the parser buffers bytes across
messages. This is a second implementation, independent of the gateway's, so each checks the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("MAX_HEADER_BYTES", "UNKNOWN_HEADER", "Frame", "FrameError", "FrameParser", "encode_frame")

UNKNOWN_HEADER = "Unknown message header"
MAX_HEADER_BYTES = 4096
_SEPARATOR = b"\r\n\r\n"
_HEADER_NAMES = (b"content-length:", b"content-type:")
_BLANK = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Frame:
    body: bytes


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that did not start with a Content-Length header; they were dropped."""

    message: str
    discarded: bytes


def encode_frame(body: str) -> str:
    """Frame one JSON text: the length counts UTF-8 bytes, not characters."""
    return f"Content-Length: {len(body.encode())}\r\n\r\n{body}"


def _could_start_header(buffer: bytes) -> bool:
    line = buffer.split(b"\r\n", 1)[0].lower()
    return any(line[: len(name)] == name[: len(line)] for name in _HEADER_NAMES)


def _content_length(header: bytes) -> int | None:
    length: int | None = None
    for line in header.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        if name.strip().lower() == b"content-length":
            text = value.strip()
            if not text.isdigit():
                return None
            length = int(text)
    return length


class FrameParser:
    """Feed it message payloads; it yields each complete frame body, or an error for garbage.

    After garbage the whole buffer is dropped: without a length there is no way to find where the
    next frame starts, and the next message most likely begins one.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: str | bytes) -> list[Frame | FrameError]:
        self._buffer += data.encode() if isinstance(data, str) else data
        out: list[Frame | FrameError] = []
        buffer = self._buffer
        while True:
            start = 0
            while start < len(buffer) and buffer[start] in _BLANK:
                start += 1
            if start:
                del buffer[:start]
            if not buffer:
                return out
            if not _could_start_header(bytes(buffer[:MAX_HEADER_BYTES])):
                out.append(self._drop())
                return out
            end = buffer.find(_SEPARATOR, 0, MAX_HEADER_BYTES + len(_SEPARATOR))
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    out.append(self._drop())
                return out
            length = _content_length(bytes(buffer[:end]))
            if length is None:
                out.append(self._drop())
                return out
            body_start = end + len(_SEPARATOR)
            if len(buffer) - body_start < length:
                return out
            out.append(Frame(bytes(buffer[body_start : body_start + length])))
            del buffer[: body_start + length]

    def _drop(self) -> FrameError:
        discarded = bytes(self._buffer)
        self._buffer.clear()
        return FrameError(UNKNOWN_HEADER, discarded)
