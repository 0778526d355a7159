"""The Anthropic ``message`` object and the token count as typed shapes, for the API description."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ("InputTokens", "Message")


class TextOut(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class ThinkingOut(msgspec.Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class ToolUseOut(msgspec.Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any]


class MessageUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class Message(msgspec.Struct, kw_only=True):
    """A non-streamed answer; with ``stream: true`` the same content arrives as Messages SSE events."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[TextOut | ThinkingOut | ToolUseOut]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"] | None
    stop_sequence: str | None = None
    usage: MessageUsage


class InputTokens(msgspec.Struct):
    """``/v1/messages/count_tokens``: the prompt's size as a turn would send it."""

    input_tokens: int
