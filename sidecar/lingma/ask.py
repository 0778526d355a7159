"""One ``chat/ask`` turn over a connection: send, follow the pushes for its ``requestId``, stop on exit.

Leaving early (``aclose``, cancellation, a timeout) sends ``chat/stop`` from a background task, so the
stop reaches Lingma at once even while the consumer is being torn down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from common.errors import GatewayError, UpstreamTimeoutError
from sidecar.lingma.errors import classify_finish
from sidecar.lingma.events import AskAccepted, UpstreamEvent
from sidecar.lingma.rpc import JsonObject, RpcConnection, RpcError, Subscription
from sidecar.lingma.turn import TurnState

__all__ = ("STOP_TIMEOUT", "run_turn")

STOP_TIMEOUT = 2.0


async def run_turn(
    conn: RpcConnection, params: JsonObject, *, instance_id: str, timeout: float
) -> AsyncGenerator[UpstreamEvent, None]:
    """Yield ``AskAccepted``, the turn's events, then ``AskFinished``; ``timeout`` bounds the whole turn."""
    turn = TurnState(request_id=params["requestId"], session_id=params["sessionId"], instance_id=instance_id)
    deadline = asyncio.get_running_loop().time() + timeout
    sub = conn.subscribe(turn.request_id)
    stop_needed = True
    try:
        refused = await _send_ask(conn, params, instance_id=instance_id, timeout=timeout)
        if refused is not None:
            stop_needed = False
            raise refused
        yield AskAccepted()
        while not turn.finished:
            push = await _next_push(sub, deadline, instance_id=instance_id, timeout=timeout)
            for event in turn.on_push(push["method"], push["params"], alone=conn.subscriber_count == 1):
                yield event
    finally:
        conn.unsubscribe(sub)
        if stop_needed and not turn.finished:
            stop = {"requestId": turn.request_id, "sessionId": turn.session_id}
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


async def _next_push(sub: Subscription, deadline: float, *, instance_id: str, timeout: float) -> JsonObject:
    remaining = deadline - asyncio.get_running_loop().time()
    try:
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            return await sub.get()
    except TimeoutError:
        raise UpstreamTimeoutError(f"no chat/finish from Lingma instance {instance_id} within {timeout:g}s") from None
