"""Pure translation between Chat Completions and the internal conversation and events.

References: docs/dialects.md §2 (request fields, chunk order, tool-call deltas, finish reasons, usage).
The non-stream answer is a fold over the same events the stream encoder sees, so the two cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from common.conversation import Conversation, ImagePart, Message, Part, TextPart, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import BadRequestError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall
from handlers.errors import openai_error_body
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
from handlers.streaming import fragments, sse_comment, sse_data

__all__ = ("ChatChunkEncoder", "to_completion", "to_conversation")

CALL_PREFIX = "call_"
DONE = b"data: [DONE]\n\n"


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
        return Message(
            role="tool", content=_parts(msg.content, skipped), tool_call_id=msg.tool_call_id.removeprefix(CALL_PREFIX)
        )
    calls = [
        ToolCallRecord(id=c.id.removeprefix(CALL_PREFIX), name=c.function.name, arguments=c.function.arguments or "{}")
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


def _usage(finished: Finished) -> dict[str, Any]:
    u = finished.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish_reason(finished: Finished, had_calls: bool) -> str:
    if had_calls:
        return "tool_calls"
    return "length" if finished.reason == "length" else "stop"


def error_payload(failed: Failed) -> dict[str, Any]:
    return openai_error_body(failed)


class ChatChunkEncoder:
    """Events in, SSE bytes out; ``Finished``/``Failed`` produce the one terminal, then ``[DONE]``."""

    def __init__(self, *, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self._base: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self._include_usage = include_usage
        self._calls = 0

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def start(self, started: Started) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def heartbeat(self) -> bytes:
        return sse_comment()

    def feed(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text}) if event.text else b""
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, ToolCall):
            return self._tool_call(event)
        if isinstance(event, Finished):
            out = self._chunk({}, _finish_reason(event, self._calls > 0))
            if self._include_usage:
                out += sse_data({**self._base, "choices": [], "usage": _usage(event)})
            return out + DONE
        if isinstance(event, Failed):
            return sse_data(error_payload(event)) + DONE
        return b""

    def _tool_call(self, call: ToolCall) -> bytes:
        index = self._calls
        self._calls += 1
        args = call.arguments if call.kind == "function" else json.dumps({"input": call.arguments})
        head = {
            "index": index,
            "id": CALL_PREFIX + call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        out = self._chunk({"tool_calls": [head]})
        for piece in fragments(args):
            out += self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return out


def to_completion(events: list[Event], *, completion_id: str, model: str, created: int) -> dict[str, Any]:
    """Fold a finished turn's events into one ``chat.completion`` object."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    finished = Finished()
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCall):
            args = event.arguments if event.kind == "function" else json.dumps({"input": event.arguments})
            calls.append(
                {"id": CALL_PREFIX + event.id, "type": "function", "function": {"name": event.name, "arguments": args}}
            )
        elif isinstance(event, Finished):
            finished = event
    content = "".join(text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls and not content.strip() else content,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(finished, bool(calls))}
        ],
        "usage": _usage(finished),
    }
