"""JSON-RPC 2.0 over Lingma's loopback WebSocket: our requests, and the server's pushed requests.

Lingma sends its stream (``chat/answer``, ``chat/finish``, ``tool/invoke``…) as JSON-RPC *requests*
and stalls when they go unanswered (the "off-by-one" quirk, docs/lingma-protocol.md §5.1), so every pushed
request is acknowledged as soon as it is read, before anything else looks at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from common.errors import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError
from sidecar.lingma.framing import MAX_FRAME_BYTES, FrameParser, encode_message
from sidecar.lingma.subscription import JsonObject, Subscription

__all__ = ("JsonObject", "RpcConnection", "RpcError", "Subscription", "dial")

log = logging.getLogger(__name__)

ToolHandler = Callable[[JsonObject], Coroutine[Any, Any, None]]

_TRUE_REPLY = frozenset({"chat/answer", "chat/finish"})
"""The plugin declares these as returning ``Boolean``; every other push gets ``null``."""

_NOISE_PREFIXES = ("window/", "telemetry/", "$/")


class RpcError(UpstreamError):
    """Lingma answered a request with a JSON-RPC ``error``."""

    def __init__(self, method: str, rpc_code: object, rpc_message: str) -> None:
        super().__init__(f"Lingma {method} failed: {rpc_message or 'no message'} (code {rpc_code})")
        self.rpc_code = rpc_code
        self.rpc_message = rpc_message


async def dial(port: int, *, open_timeout: float) -> ClientConnection:
    """One WebSocket dial to ``ws://127.0.0.1:<port>/``; no proxy, no keepalive pings, no compression."""
    return await connect(
        f"ws://127.0.0.1:{port}/",
        open_timeout=open_timeout,
        proxy=None,
        ping_interval=None,
        compression=None,
        max_size=MAX_FRAME_BYTES,
        close_timeout=2,
    )


def _more_waiting(ws: ClientConnection) -> bool:
    """Whether a received message is already queued (websockets keeps them in ``recv_messages.frames``).

    Only an optimisation: if a websockets release moves that queue, every reply goes out on its own.
    """
    frames = getattr(getattr(ws, "recv_messages", None), "frames", None)
    try:
        return bool(frames)
    except TypeError:
        return False


class RpcConnection:
    """One client connection: request futures by id, one reader task, pushes routed by ``requestId``."""

    def __init__(self, ws: ClientConnection, *, name: str = "Lingma") -> None:
        self._ws = ws
        self._name = name
        self._parser = FrameParser()
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self._subs: dict[str, Subscription] = {}
        self._by_session: dict[str, list[Subscription]] = {}
        """Subscriptions that named their session, for pushes that carry a ``sessionId`` but no ``requestId``."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.messages_received = 0
        """Messages that show Lingma working (answers to our requests, pushes other than window/telemetry
        notices): the instance's prober takes any as a sign of life, so a process that only chatters is not."""
        self._closed_reason: str | None = None
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.tool_handler: ToolHandler | None = None
        """Called (as a task) for every ``tool/invoke`` after it was acknowledged."""
        self.on_close: Callable[[str], None] | None = None
        """Called once, synchronously, when the connection is lost or closed, with the reason."""

    def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name=f"{self._name} reader")

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def subscriber_count(self) -> int:
        """Turns in flight on this connection."""
        return len(self._subs)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def request(self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float) -> Any:
        """Send a request (``params`` always an object) and wait for its result."""
        self._check_open()
        key = str(next(self._ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = (method, future)
        try:
            await self._send({"jsonrpc": "2.0", "id": int(key), "method": method, "params": dict(params or {})})
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise UpstreamTimeoutError(f"{self._name} did not answer {method} within {timeout:g}s") from None
        finally:
            self._pending.pop(key, None)

    def request_soon(self, method: str, params: Mapping[str, Any], *, timeout: float) -> None:
        """Fire and forget: send now from a task, never raise, give up after ``timeout``."""
        if not self.closed:
            self._spawn(self._quiet_request(method, params, timeout), f"{self._name} {method}")

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        self._check_open()
        await self._send({"jsonrpc": "2.0", "method": method, "params": dict(params or {})})

    def subscribe(self, request_id: str, session_id: str = "") -> Subscription:
        sub = Subscription(request_id, session_id)
        if self._closed_reason is not None:
            sub._close(self._closed_reason)
        self._subs[request_id] = sub
        if session_id:
            self._by_session.setdefault(session_id, []).append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.request_id) is sub:
            del self._subs[sub.request_id]
        same = self._by_session.get(sub.session_id)
        if same is not None and sub in same:
            same.remove(sub)
            if not same:
                del self._by_session[sub.session_id]

    async def close(self, reason: str | None = None) -> None:
        """Fail everything waiting on this connection at once, then close the socket."""
        self._fail_all(reason or f"the connection to {self._name} was closed")
        with contextlib.suppress(TimeoutError, OSError, ConnectionClosed):
            await asyncio.wait_for(self._ws.close(), 3)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise UpstreamUnavailableError(self._closed_reason)

    async def _send(self, message: JsonObject) -> None:
        await self._send_text(encode_message(message))

    async def _send_text(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except ConnectionClosed:
            raise UpstreamUnavailableError(self._closed_reason or f"the connection to {self._name} closed") from None

    async def _read_loop(self) -> None:
        reason = f"the connection to {self._name} closed"
        replies: list[str] = []
        try:
            while True:
                # Bytes, not text: the frame parser cuts by byte length, so decoding first would be wasted.
                message = await self._ws.recv(decode=False)
                for frame in self._parser.feed(message):
                    reply = self._dispatch(frame)
                    if reply is not None:
                        replies.append(reply)
                # The replies to every push already received leave together, in one WebSocket message, as
                # soon as no further message is waiting: never later than the last of them arrived.
                if replies and not _more_waiting(self._ws):
                    text = "".join(replies)
                    replies.clear()
                    await self._send_text(text)
        except ConnectionClosed:
            pass
        except UpstreamUnavailableError as exc:
            reason = exc.message
        except Exception:
            log.exception("%s reader failed", self._name)
            reason = f"the connection to {self._name} failed"
        finally:
            self._fail_all(reason)

    def _dispatch(self, message: JsonObject) -> str | None:
        """Route one incoming message; return the framed reply it needs, if any."""
        method = message.get("method")
        if isinstance(method, str):
            return self._on_push(method, message)
        self.messages_received += 1
        entry = self._pending.get(str(message.get("id")))
        if entry is None:
            log.debug("%s sent a response nobody waits for: id %r", self._name, message.get("id"))
            return None
        name, future = entry
        if future.done():
            return None
        error = message.get("error")
        if error is not None:
            err = error if isinstance(error, dict) else {"message": str(error)}
            future.set_exception(RpcError(name, err.get("code"), str(err.get("message") or "")))
        else:
            future.set_result(message.get("result"))
        return None

    def _on_push(self, method: str, message: JsonObject) -> str | None:
        reply = None
        if message.get("id") is not None:
            result = True if method in _TRUE_REPLY else None
            reply = encode_message({"jsonrpc": "2.0", "id": message["id"], "result": result})
        if method.startswith(_NOISE_PREFIXES):
            return reply
        self.messages_received += 1
        raw = message.get("params")
        params: JsonObject = raw if isinstance(raw, dict) else {}
        push = {"method": method, "params": params}
        if method == "tool/invoke" and self.tool_handler is not None:
            self._spawn(self.tool_handler(params), f"{self._name} tool/invoke")
        request_id = params.get("requestId")
        if isinstance(request_id, str) and request_id:
            sub = self._subs.get(request_id)
            if sub is not None:
                sub._push(push)
            return reply
        # Without a requestId (some builds send session/title/update so) a push is owned by the turn that asked in
        # the session it names, or by the only turn in flight (sidecar.lingma.turn): it goes to those alone, since
        # waking every turn in flight for each such push costs the square of the turns in flight.
        session_id = params.get("sessionId")
        owners: Sequence[Subscription] = self._by_session.get(session_id, ()) if isinstance(session_id, str) else ()
        if len(self._subs) == 1:
            owners = list(self._subs.values())
        for sub in owners:
            sub._push(push)
        return reply

    def _fail_all(self, reason: str) -> None:
        first = self._closed_reason is None
        reason = self._closed_reason = self._closed_reason or reason
        self._closed.set()
        pending, self._pending = self._pending, {}
        for _, future in pending.values():
            if not future.done():
                future.set_exception(UpstreamUnavailableError(reason))
        for sub in list(self._subs.values()):
            sub._close(reason)
        if first and self.on_close is not None:
            self.on_close(reason)

    async def _quiet_request(self, method: str, params: Mapping[str, Any], timeout: float) -> None:
        try:
            await self.request(method, params, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - fire and forget: a failure is only worth a log line
            log.debug("%s %s failed: %s", self._name, method, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s background task %s failed: %r", self._name, task.get_name(), task.exception())
