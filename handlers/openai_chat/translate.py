"""A Chat Completions request, translated into the internal conversation (docs/dialects.md §2.1)."""

from __future__ import annotations

import json

import msgspec

from common.conversation import Conversation, ImagePart, Message, Part, TextPart, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import BadRequestError
from handlers.openai_chat.schema import (
    ChatCompletionRequest,
    ChatMessage,
    ImageUrlPart,
    NamedToolChoice,
    RefusalPart,
    TextContentPart,
    decode_part,
)
from handlers.policy import check_conversation, check_sampling, check_single_choice, resolve_tool_choice
from handlers.tool_ids import internal_id

__all__ = ("to_conversation",)


def _parts(content: str | list[msgspec.Raw] | None, skipped: list[str]) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    out: list[Part] = []
    for raw in content:
        try:
            part = decode_part(raw)
        except msgspec.ValidationError as exc:
            raise BadRequestError(f"invalid content part: {exc}", param="messages") from None
        if isinstance(part, str):
            skipped.append(part)
        elif isinstance(part, TextContentPart):
            out.append(TextPart(part.text))
        elif isinstance(part, RefusalPart):
            out.append(TextPart(part.refusal))
        elif isinstance(part, ImageUrlPart):
            url = part.image_url.url
            out.append(ImagePart(url.split(",", 1)[0] if url.startswith("data:") else url))
    return out


def _message(msg: ChatMessage, skipped: list[str]) -> Message:
    role = msg.role
    if role == "function":
        return Message(role="tool", content=_parts(msg.content, skipped), name=msg.name, tool_call_id=msg.name)
    if role == "tool":
        if not msg.tool_call_id:
            raise BadRequestError("a tool message needs tool_call_id", param="messages")
        return Message(role="tool", content=_parts(msg.content, skipped), tool_call_id=internal_id(msg.tool_call_id))
    calls = [
        ToolCallRecord(id=internal_id(c.id), name=c.function.name, arguments=c.function.arguments or "{}")
        for c in msg.tool_calls or []
    ]
    return Message(role=role, content=_parts(msg.content, skipped), tool_calls=calls)


def _tool_choice(raw: str | NamedToolChoice | None) -> ToolChoice:
    if raw is None or raw == "auto":
        return ToolChoice()
    if isinstance(raw, NamedToolChoice):
        return ToolChoice(mode="named", name=raw.function.name)
    if raw in ("none", "required"):
        return ToolChoice(mode=raw)  # type: ignore[arg-type]
    raise BadRequestError(
        f"unknown tool_choice {raw!r}: use none, auto, required or a named function", param="tool_choice"
    )


def to_conversation(
    req: ChatCompletionRequest,
    *,
    key_fingerprint: str,
    affinity: str | None,
) -> Conversation:
    """Normalise a request. Every offered tool is passed on: the sidecar applies the tool settings."""
    if not req.messages:
        raise BadRequestError("messages must contain at least one message", param="messages")
    if not req.model:
        raise BadRequestError("model must not be empty", param="model")
    check_sampling(req.temperature, req.top_p, temperature_max=2.0)
    check_single_choice(req.n)
    tools = [
        ToolSpec(
            name=tool.function.name,
            description=tool.function.description or "",
            parameters=json.dumps(tool.function.parameters or {}, sort_keys=True, ensure_ascii=False),
        )
        for tool in req.tools or []
    ]
    choice = resolve_tool_choice(_tool_choice(req.tool_choice), tools)
    skipped: list[str] = []
    messages = [_message(m, skipped) for m in req.messages]
    conversation = Conversation(
        model=req.model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        want_reasoning=True,
        affinity=affinity or req.user,
        api_key_fingerprint=key_fingerprint,
    )
    return check_conversation(conversation, skipped=skipped)
