"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: decode, translate, run the turn, encode.

Claude Code adds ``?beta=true`` and a list of ``anthropic-beta`` flags; routing is on the path alone, so
both are accepted as they come.
"""

from __future__ import annotations

import uuid

from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Stream

from common.conversation import Conversation
from common.log import REQUEST_ID
from handlers.affinity import affinity_of
from handlers.anthropic_messages.encoder import AnthropicEncoder, to_message
from handlers.anthropic_messages.schema import CountTokensRequest, InputTokens, Message, MessagesRequest
from handlers.anthropic_messages.translate import to_conversation
from handlers.apidoc import api
from handlers.body import json_body
from handlers.context import GatewayContext, caller_key, key_fingerprint, require_api_key
from handlers.errors import anthropic_exception_handlers
from handlers.streaming import collect_turn, instance_of, open_turn, sse_response

__all__ = ("router",)


def _conversation(
    request: Request[object, object, State], payload: CountTokensRequest, gateway: GatewayContext
) -> Conversation:
    key = caller_key(request)
    conversation = to_conversation(payload, key_fingerprint=key_fingerprint(key), affinity=affinity_of(request.headers))
    return gateway.for_key(conversation, key)


@post(
    "/v1/messages",
    status_code=200,
    guards=[require_api_key],
    dependencies={"payload": json_body(MessagesRequest)},
    opt=api(
        "Create a message (what Claude Code speaks)",
        "Anthropic",
        response=Message,
        streams=True,
        errors="anthropic",
    ),
)
async def messages(
    request: Request[object, object, State],
    payload: NamedDependency[MessagesRequest],
    gateway: NamedDependency[GatewayContext],
) -> Response[object] | Stream:
    conversation = _conversation(request, payload, gateway)
    message_id = "msg_" + uuid.uuid4().hex
    request_id = REQUEST_ID.get()
    want_thinking = conversation.want_reasoning
    if not payload.stream:
        events = await collect_turn(gateway.client, conversation, request_id, receive=request.receive)
        body = to_message(events, message_id=message_id, model=payload.model, want_thinking=want_thinking)
        return Response(content=body, headers={"x-lingma-instance": instance_of(events), "request-id": request_id})
    turn = await open_turn(
        gateway.client,
        conversation,
        request_id,
        commit_after=gateway.settings.gateway_heartbeat_sec,
        receive=request.receive,
    )
    encoder = AnthropicEncoder(message_id=message_id, model=payload.model, want_thinking=want_thinking)
    return sse_response(turn, encoder, gateway, {"request-id": request_id})


@post(
    "/v1/messages/count_tokens",
    status_code=200,
    guards=[require_api_key],
    dependencies={"payload": json_body(CountTokensRequest)},
    opt=api("Count a request's input tokens", "Anthropic", response=InputTokens, errors="anthropic"),
)
async def count_tokens(
    request: Request[object, object, State],
    payload: NamedDependency[CountTokensRequest],
    gateway: NamedDependency[GatewayContext],
) -> Response[object]:
    """The sidecar counts with the same renderer and tokenizer as a turn; Lingma is never called."""
    tokens = await gateway.client.count_tokens(_conversation(request, payload, gateway))
    return Response(content={"input_tokens": tokens}, headers={"request-id": REQUEST_ID.get()})


router = Router(path="/", route_handlers=[messages, count_tokens], exception_handlers=anthropic_exception_handlers)
