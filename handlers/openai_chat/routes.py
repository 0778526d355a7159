"""``POST /v1/chat/completions``: decode, translate, run the turn, encode."""

from __future__ import annotations

import time
import uuid

from litestar import Request, Response, Router, post
from litestar.datastructures import State
from litestar.response import Stream

from common.log import REQUEST_ID
from handlers.affinity import affinity_of
from handlers.apidoc import api
from handlers.body import read_json
from handlers.context import context_of, key_fingerprint
from handlers.errors import openai_exception_handlers
from handlers.openai_chat.answer import ChatCompletion
from handlers.openai_chat.schema import ChatCompletionRequest
from handlers.openai_chat.translate import ChatChunkEncoder, to_completion, to_conversation
from handlers.streaming import collect_turn, instance_of, open_turn, sse_response

__all__ = ("router",)


@post(
    "/v1/chat/completions",
    status_code=200,
    opt=api("Create a chat completion", "OpenAI", request=ChatCompletionRequest, response=ChatCompletion, streams=True),
)
async def chat_completions(request: Request[object, object, State]) -> Response[object] | Stream:
    ctx = context_of(request)
    key = ctx.authenticate(request)
    req = await read_json(request, ChatCompletionRequest, ctx.settings.gateway_max_body_bytes)
    conversation = to_conversation(
        req,
        key_fingerprint=key_fingerprint(key),
        affinity=affinity_of(request.headers),
    )
    conversation = ctx.for_key(conversation, key)
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    if not req.stream:
        events = await collect_turn(ctx.client, conversation, REQUEST_ID.get(), receive=request.receive)
        body = to_completion(events, completion_id=completion_id, model=req.model, created=created)
        return Response(content=body, headers={"x-lingma-instance": instance_of(events)})
    turn = await open_turn(
        ctx.client,
        conversation,
        REQUEST_ID.get(),
        commit_after=ctx.settings.gateway_heartbeat_sec,
        receive=request.receive,
    )
    encoder = ChatChunkEncoder(
        completion_id=completion_id,
        model=req.model,
        created=created,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )
    return sse_response(turn, encoder, ctx)


router = Router(path="/", route_handlers=[chat_completions], exception_handlers=openai_exception_handlers)
