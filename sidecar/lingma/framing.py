"""LSP-style ``Content-Length`` framing inside WebSocket text messages (docs/lingma-protocol.md §2).

Lingma rejects bare JSON, and it packs several frames into one WebSocket message or splits one frame
across messages, so the reader buffers bytes and cuts frames by the declared UTF-8 byte length.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec

__all__ = ("MAX_FRAME_BYTES", "FrameParser", "encode_message")

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A declared length above this is treated as garbage rather than waited for."""

_MAX_HEADER_BYTES = 4096
_NEEDLE = b"content-length"
_NEEDLE_RE = re.compile(re.escape(_NEEDLE), re.IGNORECASE)
_TERMINATOR = b"\r\n\r\n"


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


def encode_message(obj: object) -> str:
    """One frame: ``Content-Length: N``, a blank line, then the JSON; N counts the body's UTF-8 bytes.

    msgspec rather than the standard ``json``: every pushed chunk of a reply is decoded here, and
    msgspec does it several times faster.
    """
    body = _ENCODER.encode(obj)
    return f"Content-Length: {len(body)}\r\n\r\n{body.decode('utf-8')}"


class FrameParser:
    """Incremental frame reader: feed it every WebSocket message, get back the whole JSON objects.

    Other headers (``Content-Type``) are tolerated; bytes that cannot start a frame are dropped, and a
    frame whose body is not a JSON object is skipped after its declared length, so one bad frame never
    desynchronises the stream.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: int | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, text: str | bytes) -> list[dict[str, Any]]:
        self._buf += text.encode("utf-8") if isinstance(text, str) else text
        out: list[dict[str, Any]] = []
        while True:
            if self._need is None and not self._read_header():
                return out
            assert self._need is not None
            if len(self._buf) < self._need:
                return out
            body = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._need = None
            obj = _decode_body(body)
            if obj is not None:
                out.append(obj)

    def _read_header(self) -> bool:
        """Consume one header block and set ``_need``; False when more bytes are needed."""
        while True:
            match = _NEEDLE_RE.search(self._buf)
            if match is None:
                # Keep a tail that may be the start of the header name; the rest cannot start a frame.
                keep = len(_NEEDLE) - 1
                if len(self._buf) > keep:
                    _log_garbage(self._buf[:-keep])
                    del self._buf[:-keep]
                return False
            start = match.start()
            if start:
                _log_garbage(self._buf[:start])
                del self._buf[:start]
            end = self._buf.find(_TERMINATOR)
            if end < 0:
                if len(self._buf) <= _MAX_HEADER_BYTES:
                    return False
                del self._buf[: len(_NEEDLE)]
                continue
            length = _content_length(bytes(self._buf[:end]))
            if length is None:
                del self._buf[: len(_NEEDLE)]
                continue
            del self._buf[: end + len(_TERMINATOR)]
            self._need = length
            return True


def _content_length(header: bytes) -> int | None:
    first, _, _ = header.partition(b"\r\n")
    name, sep, value = first.partition(b":")
    if not sep or name.strip().lower() != _NEEDLE:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        return None
    return length if 0 <= length <= MAX_FRAME_BYTES else None


def _decode_body(body: bytes) -> dict[str, Any] | None:
    try:
        obj = _DECODER.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
        log.warning("skipping an undecodable Lingma frame (%d bytes)", len(body))
        return None
    if not isinstance(obj, dict):
        log.warning("skipping a Lingma frame that is not a JSON object")
        return None
    return obj


def _log_garbage(data: bytes | bytearray) -> None:
    if data.strip():
        log.debug("dropping %d bytes that do not start a Lingma frame", len(data))
