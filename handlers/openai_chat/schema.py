"""OpenAI Chat Completions types: the request (docs/dialects.md §2.1, unknown fields ignored), the
``chat.completion`` answer (§2.2) and the ``chat.completion.chunk`` events of a stream (§2.3, §2.4).

The encoder builds the answer and the chunks from these types, so what ``/openapi.json`` describes is what
goes out."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from common.conversation import TokenLimit

__all__ = (
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatTool",
    "ContentPart",
    "NamedToolChoice",
    "decode_part",
)

FinishReason = Literal["stop", "length", "tool_calls"]


class _Part(msgspec.Struct, tag_field="type"):
    pass


class TextContentPart(_Part, tag="text"):
    text: str


class ImageUrl(msgspec.Struct):
    url: str = ""
    detail: str | None = None


class ImageUrlPart(_Part, tag="image_url"):
    image_url: ImageUrl


class RefusalPart(_Part, tag="refusal"):
    refusal: str = ""


class InputAudioPart(_Part, tag="input_audio"):
    pass


class FilePart(_Part, tag="file"):
    pass


ContentPart = TextContentPart | ImageUrlPart | RefusalPart | InputAudioPart | FilePart
KNOWN_PART_TYPES = frozenset({"text", "image_url", "refusal", "input_audio", "file"})


class _Tag(msgspec.Struct):
    type: str = ""


_tag_decoder = msgspec.json.Decoder(_Tag)
_part_decoder = msgspec.json.Decoder(ContentPart)


def decode_part(raw: msgspec.Raw) -> ContentPart | str:
    """Type one content part; a part of an unknown type comes back as its type name, to be skipped."""
    tag = _tag_decoder.decode(raw).type
    if tag not in KNOWN_PART_TYPES:
        return tag
    part: ContentPart = _part_decoder.decode(raw)
    return part


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str = ""


class ChatToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class ChatMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[msgspec.Raw] | None = None
    name: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, object] | None = None
    strict: bool | None = None


class ChatTool(msgspec.Struct):
    function: FunctionDef
    type: str = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction
    type: str = "function"


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct):
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ChatTool] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    user: str | None = None
    reasoning_effort: str | None = None
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None


# --- the answer and the stream's chunks --------------------------------------------------------------------------
# Field order is the order the JSON goes out in; ``UNSET`` fields are left out, ``None`` ones are ``null``.


class AnswerFunctionCall(msgspec.Struct):
    name: str
    arguments: str


class AnswerToolCall(msgspec.Struct):
    id: str
    type: Literal["function"]
    function: AnswerFunctionCall


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    reasoning_content: str | UnsetType = UNSET
    """Lingma's reasoning text, when the model produced any."""
    tool_calls: list[AnswerToolCall] | UnsetType = UNSET


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class CompletionUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ChatCompletion(msgspec.Struct, kw_only=True):
    """A non-streamed answer; with ``stream: true`` the same content arrives as ``ChatCompletionChunk`` SSE."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[Choice]
    usage: CompletionUsage


class FunctionDelta(msgspec.Struct, kw_only=True):
    name: str | UnsetType = UNSET
    arguments: str


class ToolCallDelta(msgspec.Struct, kw_only=True):
    """A call's first chunk has its id, type and name; the later ones only pieces of its arguments."""

    index: int
    id: str | UnsetType = UNSET
    type: Literal["function"] | UnsetType = UNSET
    function: FunctionDelta


class ChunkDelta(msgspec.Struct, kw_only=True):
    role: Literal["assistant"] | UnsetType = UNSET
    content: str | UnsetType = UNSET
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    """One ``data:`` event of a stream; with ``stream_options.include_usage`` every chunk has ``usage`` (null
    but in the last one, whose ``choices`` is empty)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[ChunkChoice]
    usage: CompletionUsage | UnsetType | None = UNSET
