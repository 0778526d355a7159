"""``POST /v1/chat/completions``: decode, translate, run the turn, encode."""

from __future__ import annotations

import time
import uuid

from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.response import Stream

from common.log import REQUEST_ID
from handlers.affinity import affinity_of
from handlers.apidoc import api
from handlers.body import json_body
from handlers.context import GatewayContext, caller_key, key_fingerprint, require_api_key
from handlers.errors import openai_exception_handlers
from handlers.openai_chat.encoder import ChatChunkEncoder, to_completion
from handlers.openai_chat.schema import ChatCompletion, ChatCompletionRequest
from handlers.openai_chat.translate import to_conversation
from handlers.streaming import collect_turn, instance_of, open_turn, sse_response

__all__ = ("router",)


@post(
    "/v1/chat/completions",
    status_code=200,
    guards=[require_api_key],
    dependencies={"payload": json_body(ChatCompletionRequest)},
    opt=api("Create a chat completion", "OpenAI", response=ChatCompletion, streams=True),
)
async def chat_completions(
    request: Request[object, object, State],
    payload: NamedDependency[ChatCompletionRequest],
    gateway: NamedDependency[GatewayContext],
) -> Response[object] | Stream:
    key = caller_key(request)
    conversation = to_conversation(payload, key_fingerprint=key_fingerprint(key), affinity=affinity_of(request.headers))
    conversation = gateway.for_key(conversation, key)
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if not payload.stream:
        events = await collect_turn(gateway.client, conversation, REQUEST_ID.get(), receive=request.receive)
        body = to_completion(events, completion_id=completion_id, model=payload.model, created=created)
        return Response(content=body, headers={"x-lingma-instance": instance_of(events)})
    turn = await open_turn(
        gateway.client,
        conversation,
        REQUEST_ID.get(),
        commit_after=gateway.settings.gateway_heartbeat_sec,
        receive=request.receive,
    )
    encoder = ChatChunkEncoder(
        completion_id=completion_id,
        model=payload.model,
        created=created,
        include_usage=bool(payload.stream_options and payload.stream_options.include_usage),
    )
    return sse_response(turn, encoder, gateway)


router = Router(path="/", route_handlers=[chat_completions], exception_handlers=openai_exception_handlers)
