"""JSON-RPC over one WebSocket peer: replies, server pushes with ids, and the deterministic send quirks.

Every push is a JSON-RPC *request* (ids ``s-1``, ``s-2``, ...), as the real binary declares them, and the
client's replies to them are accepted. With quirks on, batches of frames go out packed in one WebSocket
message and every third single frame is split across two messages, so a client must buffer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any, Protocol

from .framing import encode_frame
from .journal import Journal

__all__ = (
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Connection",
    "MessageSink",
    "RpcError",
    "go_decode_error",
)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

_MAX_PENDING = 10_000
_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


class MessageSink(Protocol):
    """What the connection writes to: a websockets connection in production."""

    async def send(self, message: str) -> None: ...


class RpcError(Exception):
    """A request that is answered with a JSON-RPC error instead of a result."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def go_decode_error(params: object, go_type: str) -> str:
    """The message Go's encoding/json gives when params are not an object, as the real binary answers."""
    kind = next((name for cls, name in _JSON_KINDS if isinstance(params, cls)), "value")
    return f"json: cannot unmarshal {kind} into Go value of type {go_type}"


def _encode(message: dict[str, Any]) -> str:
    return encode_frame(json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str))


def _consume_exception(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class Connection:
    """One peer. Sends are serialised by a lock so a split frame's two halves are never interleaved."""

    def __init__(self, sink: MessageSink, journal: Journal, *, quirks: bool, push_ids: Iterator[int]) -> None:
        self._sink = sink
        self._journal = journal
        self._quirks = quirks
        self._push_ids = push_ids
        self._lock = asyncio.Lock()
        self._singles = itertools.count(1)
        self._pending: dict[str, str] = {}

    @property
    def quirks(self) -> bool:
        return self._quirks

    def push_message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Build a server-to-client request and remember its id so the client's reply can be journaled."""
        msg_id = f"s-{next(self._push_ids)}"
        self._pending[msg_id] = method
        if len(self._pending) > _MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}

    async def push(self, method: str, params: dict[str, Any]) -> None:
        await self.send(self.push_message(method, params))

    async def reply(self, msg_id: object, result: object, method: str | None = None) -> None:
        await self.send({"jsonrpc": "2.0", "id": msg_id, "result": result}, method)

    async def reply_error(self, msg_id: object, code: int, message: str, method: str | None = None) -> None:
        await self.send({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}, method)

    def accept_response(self, message: dict[str, Any]) -> None:
        """The client answered one of our pushes; nothing waits on it, it is journaled."""
        method = self._pending.pop(str(message.get("id")), None)
        self._journal.record("in", message, method)

    async def send(self, message: dict[str, Any], method: str | None = None) -> None:
        await self._write([(message, method)], packed=False)

    async def send_batch(self, messages: list[dict[str, Any]]) -> None:
        """Several frames in one WebSocket message (quirks on), or one message each."""
        await self._write([(message, None) for message in messages], packed=True)

    async def _write(self, messages: list[tuple[dict[str, Any], str | None]], *, packed: bool) -> None:
        # Shielded: a turn cancelled by chat/stop must not leave half of a split frame on the wire.
        task = asyncio.ensure_future(self._write_locked(messages, packed))
        task.add_done_callback(_consume_exception)
        await asyncio.shield(task)

    async def _write_locked(self, messages: list[tuple[dict[str, Any], str | None]], packed: bool) -> None:
        frames = [_encode(message) for message, _ in messages]
        async with self._lock:
            for message, method in messages:
                self._journal.record("out", message, method)
            if packed and self._quirks:
                await self._sink.send("".join(frames))
                return
            for frame in frames:
                n = next(self._singles)
                if self._quirks and n % 3 == 0:
                    cut = 9 if (n // 3) % 2 else len(frame) // 2
                    await self._sink.send(frame[:cut])
                    await self._sink.send(frame[cut:])
                else:
                    await self._sink.send(frame)
