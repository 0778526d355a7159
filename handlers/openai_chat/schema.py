"""OpenAI Chat Completions request types (docs/dialects.md §2.1). Unknown fields are ignored."""

from __future__ import annotations

from typing import Literal

import msgspec

from common.conversation import TokenLimit

__all__ = (
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatTool",
    "ContentPart",
    "NamedToolChoice",
    "decode_part",
)


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
