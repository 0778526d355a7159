"""The ``chat.completion`` object as typed shapes, for the API description (the encoder builds the same JSON)."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ("ChatCompletion",)


class AnswerFunctionCall(msgspec.Struct):
    name: str
    arguments: str


class AnswerToolCall(msgspec.Struct):
    id: str
    function: AnswerFunctionCall
    type: Literal["function"] = "function"


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"]
    content: str | None
    refusal: None = None
    reasoning_content: str | None = None
    """Lingma's reasoning text, when the model produced any."""
    tool_calls: list[AnswerToolCall] | None = None


class Choice(msgspec.Struct):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class CompletionUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    """A non-streamed answer; with ``stream: true`` the same content arrives as ``chat.completion.chunk`` SSE."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: None = None
