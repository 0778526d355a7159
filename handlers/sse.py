"""Server-sent event framing and the headers every stream carries."""

from __future__ import annotations

import msgspec

__all__ = ("ARGUMENT_FRAGMENT", "SSE_HEADERS", "fragments", "sse_comment", "sse_data", "sse_event")

SSE_HEADERS = {
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
    "connection": "keep-alive",
}

_encode = msgspec.json.Encoder().encode

ARGUMENT_FRAGMENT = 48
"""Characters per tool-argument delta: clients see a call stream in, as from the real APIs."""


def sse_data(payload: object) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def sse_event(name: str, payload: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


def sse_comment(text: str = "keep-alive") -> bytes:
    return b": " + text.encode() + b"\n\n"


def _escape_end(text: str, i: int) -> int:
    """The index after the escape sequence starting at ``text[i]`` (a surrogate pair counts as one)."""
    if text.startswith("u", i + 1):
        end = i + 6
        if text[i + 2 : i + 4].lower() in ("d8", "d9", "da", "db") and text.startswith("\\u", end):
            end += 6
        return end
    return i + 2


def fragments(text: str, size: int = ARGUMENT_FRAGMENT) -> list[str]:
    """Cut JSON text into pieces of about ``size`` characters, never inside an escape sequence."""
    pieces: list[str] = []
    start = i = 0
    while i < len(text):
        i = _escape_end(text, i) if text[i] == "\\" else i + 1
        if i - start >= size:
            pieces.append(text[start:i])
            start = i
    if start < len(text):
        pieces.append(text[start:])
    return pieces
