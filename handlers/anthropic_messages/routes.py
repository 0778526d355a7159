"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: decode, translate, run the turn, encode.

Claude Code adds ``?beta=true`` and a list of ``anthropic-beta`` flags; routing is on the path alone, so
both are accepted as they come.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.response import Stream

from common.conversation import Conversation
from common.log import REQUEST_ID
from handlers.affinity import affinity_of
from handlers.anthropic_messages.answer import InputTokens, Message
from handlers.anthropic_messages.schema import CountTokensRequest, MessagesRequest
from handlers.anthropic_messages.translate import AnthropicEncoder, to_conversation, to_message
from handlers.apidoc import api
from handlers.body import read_json
from handlers.context import context_of, key_fingerprint
from handlers.errors import anthropic_exception_handlers
from handlers.streaming import collect_turn, instance_of, open_turn, sse_response

__all__ = ("router",)

R = TypeVar("R", bound=CountTokensRequest)


async def _decode(request: Request[object, object, State], kind: type[R]) -> tuple[R, Conversation]:
    ctx = context_of(request)
    key = ctx.authenticate(request)
    req = await read_json(request, kind, ctx.settings.gateway_max_body_bytes)
    conversation = to_conversation(
        req,
        key_fingerprint=key_fingerprint(key),
        affinity=affinity_of(request.headers),
    )
    conversation = ctx.for_key(conversation, key)
    return req, conversation


@post(
    "/v1/messages",
    status_code=200,
    opt=api(
        "Create a message (what Claude Code speaks)",
        "Anthropic",
        request=MessagesRequest,
        response=Message,
        streams=True,
        errors="anthropic",
    ),
)
async def messages(request: Request[object, object, State]) -> Response[object] | Stream:
    ctx = context_of(request)
    req, conversation = await _decode(request, MessagesRequest)
    message_id = "msg_" + uuid.uuid4().hex
    request_id = REQUEST_ID.get()
    if not req.stream:
        events = await collect_turn(ctx.client, conversation, request_id, receive=request.receive)
        body = to_message(events, message_id=message_id, model=req.model, want_thinking=conversation.want_reasoning)
        return Response(content=body, headers={"x-lingma-instance": instance_of(events), "request-id": request_id})
    turn = await open_turn(
        ctx.client, conversation, request_id, commit_after=ctx.settings.gateway_heartbeat_sec, receive=request.receive
    )
    encoder = AnthropicEncoder(message_id=message_id, model=req.model, want_thinking=conversation.want_reasoning)
    return sse_response(turn, encoder, ctx, {"request-id": request_id})


@post(
    "/v1/messages/count_tokens",
    status_code=200,
    opt=api(
        "Count a request's input tokens",
        "Anthropic",
        request=CountTokensRequest,
        response=InputTokens,
        errors="anthropic",
    ),
)
async def count_tokens(request: Request[object, object, State]) -> Response[object]:
    """The sidecar counts with the same renderer and tokenizer as a turn; Lingma is never called."""
    ctx = context_of(request)
    _req, conversation = await _decode(request, CountTokensRequest)
    tokens = await ctx.client.count_tokens(conversation)
    return Response(content={"input_tokens": tokens}, headers={"request-id": REQUEST_ID.get()})


router = Router(path="/", route_handlers=[messages, count_tokens], exception_handlers=anthropic_exception_handlers)
