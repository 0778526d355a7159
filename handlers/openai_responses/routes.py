"""``POST /v1/responses`` and ``POST /responses``: decode, translate, run the turn, encode.

A WebSocket upgrade on the same paths (newer Codex tries one first) is refused at once with 426 and an
OpenAI error body, so the client falls back to HTTP without waiting.
"""

from __future__ import annotations

import logging
import time
import uuid

import msgspec
from litestar import Request, Response, Router, WebSocket, get, post, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Stream

from common.log import REQUEST_ID
from handlers.affinity import affinity_of
from handlers.apidoc import OpenAIError, api
from handlers.body import json_body
from handlers.context import GatewayContext, caller_key, key_fingerprint, require_api_key
from handlers.errors import openai_exception_handlers
from handlers.observability import HTTP_METRICS
from handlers.openai_responses.encoder import ResponsesEncoder, to_response
from handlers.openai_responses.schema import Response as ResponseObject
from handlers.openai_responses.schema import ResponsesRequest
from handlers.openai_responses.translate import response_skeleton, to_conversation, unserved_tool_types
from handlers.streaming import collect_turn, instance_of, open_turn, sse_response

__all__ = ("router",)

log = logging.getLogger("lingma_gateway.handlers.responses")

PATHS = ["/v1/responses", "/responses"]
_LOGGED_UNSERVED: set[str] = set()

_WEBSOCKET_REFUSAL = msgspec.json.encode(
    {
        "error": {
            "message": "WebSocket transport is not supported here; send POST /v1/responses over HTTP instead",
            "type": "invalid_request_error",
            "param": None,
            "code": "websocket_not_supported",
        }
    }
)


def _note_unserved(kinds: list[str]) -> None:
    """Count (on /metrics) and log once per type the tools that are left out of the contract."""
    for kind in kinds:
        if kind not in _LOGGED_UNSERVED:
            _LOGGED_UNSERVED.add(kind)
            log.info("tools of type %r cannot be served by Lingma and are left out of requests", kind)
        HTTP_METRICS.unserved_tools.labels(kind).inc()


@post(
    PATHS,
    status_code=200,
    guards=[require_api_key],
    dependencies={"payload": json_body(ResponsesRequest)},
    opt=api("Create a response (what the Codex CLI speaks)", "OpenAI", response=ResponseObject, streams=True),
)
async def create_response(
    request: Request[object, object, State],
    payload: NamedDependency[ResponsesRequest],
    gateway: NamedDependency[GatewayContext],
) -> Response[bytes] | Stream:
    key = caller_key(request)
    response_id = "resp_" + uuid.uuid4().hex
    conversation = to_conversation(
        payload,
        key_fingerprint=key_fingerprint(key),
        affinity=affinity_of(request.headers),
        response_id=response_id,
    )
    conversation = gateway.for_key(conversation, key)
    _note_unserved(unserved_tool_types(payload))
    skeleton = response_skeleton(payload, response_id=response_id, created_at=int(time.time()))
    if not payload.stream:
        events = await collect_turn(gateway.client, conversation, REQUEST_ID.get(), receive=request.receive)
        body = to_response(events, skeleton=skeleton, want_reasoning=conversation.want_reasoning)
        return Response(
            content=msgspec.json.encode(body),
            media_type="application/json",
            headers={"x-lingma-instance": instance_of(events)},
        )
    turn = await open_turn(
        gateway.client,
        conversation,
        REQUEST_ID.get(),
        commit_after=gateway.settings.gateway_heartbeat_sec,
        receive=request.receive,
    )
    encoder = ResponsesEncoder(skeleton, want_reasoning=conversation.want_reasoning)
    return sse_response(turn, encoder, gateway)


@get(
    PATHS,
    status_code=426,
    opt=api(
        "Refused with 426: this endpoint is POST only (a WebSocket upgrade is refused too)",
        "OpenAI",
        response=OpenAIError,
        errors=None,
        auth="none",
        status=426,
    ),
)
async def refuse_get() -> Response[bytes]:
    """A plain GET (or an upgrade the server did not treat as one): this endpoint is POST only."""
    return Response(content=_WEBSOCKET_REFUSAL, status_code=426, media_type="application/json")


@websocket(PATHS)
async def refuse_websocket(socket: WebSocket[object, object, State]) -> None:
    """Deny the handshake with an HTTP answer where the server allows one, else close before accepting."""
    if "websocket.http.response" in (socket.scope.get("extensions") or {}):
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_WEBSOCKET_REFUSAL)).encode())]
        await socket.send({"type": "websocket.http.response.start", "status": 426, "headers": headers})
        await socket.send({"type": "websocket.http.response.body", "body": _WEBSOCKET_REFUSAL, "more_body": False})
        return
    await socket.close(code=1008, reason="use HTTP POST")


router = Router(
    path="/",
    route_handlers=[create_response, refuse_get, refuse_websocket],
    exception_handlers=openai_exception_handlers,
)
