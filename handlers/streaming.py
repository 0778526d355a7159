"""Streaming a turn: the ``StreamEncoder`` contract every dialect fills, the commit rule, and SSE framing.

A dialect's encoder turns sidecar events into its bytes; this module runs the turn around it. Until the
first content event arrives or the first heartbeat is due, a failure is still an HTTP error (``open_turn``
raises it, docs/dialects.md §1.2). After that the answer is committed: every later failure is reported
inside the stream, and ``stream_body`` makes sure the encoder's terminal comes out exactly once (§1.4).
A ``Failed`` goes to the encoder as the sidecar (or the client, on a broken connection) made it; this
module makes one only for what it alone sees: a turn without a terminal, a broken pump, a shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import msgspec
from litestar.response import Stream

from common.client import SidecarClient
from common.conversation import Conversation
from common.errors import GatewayError
from common.protocol import Complete, Event, Failed, Finished, Started
from handlers.body import arrival_time
from handlers.context import GatewayContext
from handlers.errors import ClientGoneError
from handlers.turn_events import OpenTurn

__all__ = (
    "ARGUMENT_FRAGMENT",
    "SSE_HEADERS",
    "ClientGoneError",
    "OpenTurn",
    "StreamEncoder",
    "collect_turn",
    "fragments",
    "instance_of",
    "open_turn",
    "sse_comment",
    "sse_data",
    "sse_event",
    "sse_response",
    "stream_body",
)

log = logging.getLogger("lingma_gateway.handlers")

# --- SSE framing (docs/dialects.md §1.1) -----------------------------------------------------------------------

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


# --- the turn and the commit rule ------------------------------------------------------------------------------

DRAIN_GRACE = 10.0

Receive = Callable[[], Awaitable[Mapping[str, Any]]]
T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    while (await receive()).get("type") != "http.disconnect":
        pass


async def _unless_gone(receive: Receive | None, work: Awaitable[T]) -> T:
    """Run ``work``, cancelling it if the client disconnects first (nothing else would tell Lingma to stop)."""
    task = asyncio.ensure_future(work)
    if receive is None:
        return await task
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
    if task.cancelled():
        raise ClientGoneError("the client disconnected before the answer was ready")
    return task.result()


class StreamEncoder(Protocol):
    """What a dialect's ``encoder.py`` provides: sidecar events in, the dialect's stream bytes out."""

    def start(self, started: Started) -> bytes:
        """The bytes sent on commit (may be empty)."""
        ...

    def feed(self, event: Event) -> bytes:
        """The bytes for one event; a ``Finished`` or ``Failed`` is the terminal, rendered once."""
        ...

    def heartbeat(self) -> bytes:
        """The keep-alive written when nothing arrived for a while (docs/dialects.md §1.3)."""
        ...


async def open_turn(
    client: SidecarClient,
    conversation: Conversation,
    request_id: str,
    *,
    commit_after: float,
    receive: Receive | None = None,
) -> OpenTurn:
    """Start a turn and wait for its commit point; raise its error if it fails before that."""
    turn = OpenTurn(client, Complete(conversation=conversation, request_id=request_id, arrived_at=arrival_time()))
    try:
        return await _unless_gone(receive, _until_commit(turn, commit_after))
    except BaseException:
        await turn.aclose()
        raise


async def _until_commit(turn: OpenTurn, commit_after: float) -> OpenTurn:
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        event = await turn.next(timeout)
        if event is None:
            return turn  # the first heartbeat is due: commit
        if isinstance(event, Failed):
            raise GatewayError.carrying(event)
        if isinstance(event, Started):
            turn.started = event
            deadline = loop.time() + commit_after
            continue
        turn.pending.append(event)
        return turn


async def collect_turn(
    client: SidecarClient, conversation: Conversation, request_id: str, *, receive: Receive | None = None
) -> list[Event]:
    """A non-streamed turn: every event up to ``Finished``; a failure raises its error."""
    return await _unless_gone(receive, _collect(client, conversation, request_id))


async def _collect(client: SidecarClient, conversation: Conversation, request_id: str) -> list[Event]:
    out: list[Event] = []
    op = Complete(conversation=conversation, request_id=request_id, arrived_at=arrival_time())
    async with client.stream(op) as events:
        async for event in events:
            if isinstance(event, Failed):
                raise GatewayError.carrying(event)
            out.append(event)
    return out


class _Drain:
    """Once the process begins a graceful shutdown, a stream gets a bounded grace before its terminal."""

    def __init__(self, draining: asyncio.Event) -> None:
        self.draining = draining
        self.deadline: float | None = None

    def wait(self, heartbeat_sec: float, now: float) -> float | None:
        """How long to wait for the next event; ``None`` once the grace is over."""
        if self.draining.is_set() and self.deadline is None:
            self.deadline = now + DRAIN_GRACE
        if self.deadline is None:
            return heartbeat_sec
        return None if now >= self.deadline else min(heartbeat_sec, 0.5)


async def _next_events(turn: OpenTurn, heartbeat_sec: float, drain: _Drain) -> list[Event] | None:
    """The events already read; ``None`` when a heartbeat is due; a terminal ``Failed`` when the turn cannot go on."""
    wait = drain.wait(heartbeat_sec, turn.loop.time())
    if wait is None:
        return [Failed(code="upstream_unavailable", message="the gateway is shutting down")]
    try:
        return await turn.next_burst(wait)
    except Exception as exc:  # noqa: BLE001 - the stream must still end with a terminal
        return [Failed(code="upstream_unavailable", message=f"the turn broke: {type(exc).__name__}")]


async def stream_body(
    turn: OpenTurn, encoder: StreamEncoder, *, heartbeat_sec: float, draining: asyncio.Event
) -> AsyncIterator[bytes]:
    """The committed part of a streamed turn: exactly one terminal, whatever happens upstream.

    The events of one burst leave as one piece of the body, so as one write to the client's socket; an
    event is never held back for one that has not arrived yet.
    """
    try:
        head = encoder.start(turn.started or Started(model=""))
        events: list[Event] | None = [*turn.pending, *turn.ready()]
        drain = _Drain(draining)
        while True:
            if events is None:
                yield encoder.heartbeat()
            elif events or head:
                body, ended = _encode_burst(encoder, events)
                yield head + body
                head = b""
                if ended:
                    return
            events = await _next_events(turn, heartbeat_sec, drain)
    finally:
        await turn.aclose()


def _encode_burst(encoder: StreamEncoder, events: list[Event]) -> tuple[bytes, bool]:
    """The bytes of ``events``, up to and including a terminal; and whether there was one."""
    pieces = []
    for event in events:
        pieces.append(encoder.feed(event))
        if isinstance(event, (Finished, Failed)):
            if isinstance(event, Failed):
                log.warning("stream ended with its error event (%s): %s", event.code, event.message)
            return b"".join(pieces), True
    return b"".join(pieces), False


def instance_of(events: list[Event]) -> str:
    """The instance that served a collected turn, for ``x-lingma-instance``."""
    return next((e.instance for e in events if isinstance(e, Started)), "")


def sse_response(
    turn: OpenTurn, encoder: StreamEncoder, ctx: GatewayContext, headers: Mapping[str, str] | None = None
) -> Stream:
    """The committed stream of a turn, with the SSE headers and ``x-lingma-instance``."""
    instance = turn.started.instance if turn.started else ""
    return Stream(
        stream_body(turn, encoder, heartbeat_sec=ctx.settings.gateway_heartbeat_sec, draining=ctx.draining),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, "x-lingma-instance": instance, **(headers or {})},
    )
