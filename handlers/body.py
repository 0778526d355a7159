"""Reading request bodies: the size limit (after decompression), gzip and zstd, and typed decoding."""

from __future__ import annotations

import contextvars
import time
import zlib
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from common.errors import BadRequestError, TooLargeError
from handlers.context import GatewayContext
from handlers.errors import ClientGoneError
from handlers.http_guard import ARRIVED_AT
from handlers.policy import check_content_type

__all__ = ("arrival_time", "json_body", "read_json")

_ARRIVED_AT: contextvars.ContextVar[float | None] = contextvars.ContextVar("request_arrived_at", default=None)

T = TypeVar("T")


async def _read_limited(request: Request[object, object, State], limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"the request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError("the client disconnected before its request body arrived")
        body = message.get("body")
        chunk = body if isinstance(body, bytes) else b""
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise BadRequestError("the body is not valid gzip") from None
    if len(out) > limit:
        raise TooLargeError(f"the decompressed request body exceeds the limit of {limit} bytes")
    return out


def _unzstd(data: bytes, limit: int) -> bytes:
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        out = reader.read(limit + 1)
    except zstandard.ZstdError:
        raise BadRequestError("the body is not valid zstd") from None
    if len(out) > limit:
        raise TooLargeError(f"the decompressed request body exceeds the limit of {limit} bytes")
    return bytes(out)


def mark_arrival(scope: Mapping[str, Any]) -> None:
    """Keep the arrival time the HTTP guard stamped for the rest of this request's task.

    Called by the request middleware, in the task the route runs in: a dependency may be resolved in a task
    of its own, where a context variable it set would not reach the route.
    """
    arrived = scope.get("state", {}).get(ARRIVED_AT)
    _ARRIVED_AT.set(arrived if isinstance(arrived, float) else time.time())


def arrival_time() -> float:
    """The Unix time this request arrived (its head was complete): where its queue wait starts."""
    arrived = _ARRIVED_AT.get()
    return time.time() if arrived is None else arrived


async def read_body(request: Request[object, object, State], limit: int) -> bytes:
    raw = await _read_limited(request, limit)
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    if encoding in ("identity", ""):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(raw, limit)
    if encoding == "zstd":
        return _unzstd(raw, limit)
    raise BadRequestError(f"unsupported Content-Encoding: {encoding}")


async def read_json(request: Request[object, object, State], kind: type[T], limit: int) -> T:
    check_content_type(request.headers.get("content-type"))
    body = await read_body(request, limit)
    if not body.strip():
        raise BadRequestError("the request body is empty; send a JSON object")
    try:
        value: T = msgspec.json.decode(body, type=kind)
    except RecursionError:
        raise BadRequestError("the request body nests JSON too deeply") from None
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"invalid request: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequestError("the request body is not valid JSON") from None
    return value


def json_body(kind: type[T]) -> Provide:
    """The ``payload`` dependency of a route whose body is a ``kind``: read and decoded as ``read_json`` does.

    The route then declares ``payload: kind`` in its signature, so its body type is in one place.
    """

    async def decode(request: Request[object, object, State], gateway: NamedDependency[GatewayContext]) -> T:
        return await read_json(request, kind, gateway.settings.gateway_max_body_bytes)

    return Provide(decode)
