"""One ``chat/ask`` over a connection: send, follow the pushes for its ``requestId``, stop on exit.

Leaving early (``aclose``, cancellation, a timeout) sends ``chat/stop`` from a background task, so the
stop reaches Lingma at once even while the consumer is being torn down.

Two deadlines bound a turn: the first chunk (the ``chat/ask`` answer and then a ``chat/answer``,
``chat/finish`` or ``tool/invoke`` push) must come within ``first_chunk_timeout``, so a hung Lingma is noticed
in seconds; the whole turn has ``timeout``. Missing either fails only this turn with ``upstream_timeout``: the
process is not restarted for it, since that would end its other turns and any login in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from common.errors import GatewayError, UpstreamTimeoutError
from sidecar.lingma.errors import AskUnansweredError, classify_finish
from sidecar.lingma.events import AskAccepted, UpstreamEvent
from sidecar.lingma.pushes import PushTracker
from sidecar.lingma.rpc import JsonObject, RpcConnection, RpcError

__all__ = ("FIRST_CHUNK_METHODS", "STOP_TIMEOUT", "run_ask")

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0
FIRST_CHUNK_METHODS = frozenset({"chat/answer", "chat/finish", "tool/invoke"})
"""Pushes that show Lingma is working on the turn (a title update or step callback alone does not)."""


async def run_ask(
    conn: RpcConnection, params: JsonObject, *, instance_id: str, timeout: float, first_chunk_timeout: float
) -> AsyncGenerator[UpstreamEvent, None]:
    """Yield ``AskAccepted``, the turn's events, then ``AskFinished``, within the turn's two deadlines."""
    tracker = PushTracker(request_id=params["requestId"], session_id=params["sessionId"], instance_id=instance_id)
    now = asyncio.get_running_loop().time()
    first_wait = min(first_chunk_timeout, timeout)
    deadline, first_deadline = now + timeout, now + first_wait
    sub = conn.subscribe(tracker.request_id, tracker.session_id)
    stop_needed = True
    chunked = False
    try:
        try:
            refused = await _send_ask(conn, params, instance_id=instance_id, timeout=first_wait)
        except UpstreamTimeoutError:
            raise _no_first_chunk(instance_id, tracker.request_id, first_wait, AskUnansweredError) from None
        if refused is not None:
            stop_needed = False
            raise refused
        yield AskAccepted()
        while True:
            try:
                pushes = await sub.take(deadline if chunked else min(deadline, first_deadline))
            except TimeoutError:
                whole = chunked or first_deadline >= deadline
                raise _timed_out(instance_id, tracker.request_id, timeout if whole else None, first_wait) from None
            for push in pushes:
                method = push["method"]
                chunked = chunked or method in FIRST_CHUNK_METHODS
                for event in tracker.on_push(method, push["params"], alone=conn.subscriber_count == 1):
                    yield event
                if tracker.finished:
                    break
            if tracker.finished:
                break
    finally:
        conn.unsubscribe(sub)
        if stop_needed and not tracker.finished:
            stop = {"requestId": tracker.request_id, "sessionId": tracker.session_id}
            conn.request_soon("chat/stop", stop, timeout=STOP_TIMEOUT)


async def _send_ask(
    conn: RpcConnection, params: JsonObject, *, instance_id: str, timeout: float
) -> GatewayError | None:
    """Send ``chat/ask``; the error when Lingma refused it (a JSON-RPC error or ``success: false``)."""
    try:
        result = await conn.request("chat/ask", params, timeout=timeout)
    except RpcError as exc:
        return _refusal({"errorCode": str(exc.rpc_code), "errorMessage": exc.rpc_message}, instance_id)
    # The older DTO says isSuccess (docs/lingma-protocol.md §4.3).
    if isinstance(result, dict) and result.get("success", result.get("isSuccess")) is False:
        return _refusal(result, instance_id)
    return None


def _refusal(payload: Mapping[str, Any], instance_id: str) -> GatewayError:
    return classify_finish(payload, instance_id=instance_id)


def _timed_out(instance_id: str, request_id: str, timeout: float | None, first_wait: float) -> UpstreamTimeoutError:
    """The turn's whole ``timeout`` ran out (when given), or else its wait for the first chunk."""
    if timeout is None:
        return _no_first_chunk(instance_id, request_id, first_wait)
    return UpstreamTimeoutError(f"no chat/finish from Lingma instance {instance_id} within {timeout:g}s")


def _no_first_chunk(
    instance_id: str, request_id: str, wait: float, kind: type[UpstreamTimeoutError] = UpstreamTimeoutError
) -> UpstreamTimeoutError:
    log.warning(
        "Lingma instance %s sent no first chunk for request %s within %gs (LINGMA_FIRST_CHUNK_TIMEOUT); "
        "stopping that turn, the instance keeps running",
        instance_id,
        request_id,
        wait,
    )
    return kind(f"Lingma instance {instance_id} sent no first chunk within {wait:g}s")
