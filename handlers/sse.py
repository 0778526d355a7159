"""Server-sent event framing and the headers every stream carries."""

from __future__ import annotations

import msgspec

__all__ = ("SSE_HEADERS", "sse_comment", "sse_data", "sse_event")

SSE_HEADERS = {
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
    "connection": "keep-alive",
}

_encode = msgspec.json.Encoder().encode


def sse_data(payload: object) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def sse_event(name: str, payload: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


def sse_comment(text: str = "keep-alive") -> bytes:
    return b": " + text.encode() + b"\n\n"
