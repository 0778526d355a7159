"""Anthropic Messages types: the request (docs/dialects.md §4.1), the ``message`` answer and the stream events.

Unknown request fields are ignored and unknown block types tolerated.

Content blocks arrive as raw JSON and are typed one at a time by ``decode_block``: Claude Code sends block
types this gateway has no use for (thinking, server-tool results, newer betas), and one unknown tag must not
turn a whole request into a 400. Fields a block carries but the gateway never uses (``cache_control``, an
image's base64 ``data``) are not declared, so they are skipped while decoding and never kept.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from common.conversation import TokenLimit

__all__ = (
    "KNOWN_BLOCK_TYPES",
    "THINKING_SIGNATURE",
    "TOOL_ID_PREFIX",
    "Block",
    "ContentBlock",
    "CountTokensRequest",
    "DocumentBlock",
    "ImageBlock",
    "InputTokens",
    "Message",
    "MessageParam",
    "MessagesRequest",
    "Metadata",
    "OtherBlock",
    "StreamEvent",
    "TextBlock",
    "ThinkingParam",
    "ToolChoiceParam",
    "ToolParam",
    "ToolResultBlock",
    "ToolUseBlock",
    "canonical_json",
    "decode_block",
)

TOOL_ID_PREFIX = "toolu_"
"""Tool-use ids are the sidecar's call ids behind this prefix; tool results name them back with it."""
THINKING_SIGNATURE = "lingma-gateway"
"""Thinking blocks need a signature; Claude Code echoes it back and ``to_conversation`` drops it again."""


def canonical_json(value: object) -> str:
    """A tool's input or input schema as compact JSON text, non-ASCII kept as it is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _Block(msgspec.Struct, tag_field="type"):
    pass


class TextBlock(_Block, tag="text"):
    text: str = ""


class ImageSource(msgspec.Struct):
    type: str = ""
    media_type: str | None = None
    url: str | None = None
    file_id: str | None = None


class ImageBlock(_Block, tag="image"):
    source: ImageSource = msgspec.field(default_factory=ImageSource)


class DocumentSource(msgspec.Struct):
    type: str = ""
    media_type: str | None = None
    url: str | None = None
    data: str | None = None
    """The document's text when ``type`` is ``text``; a base64 payload otherwise (never used)."""
    content: str | list[msgspec.Raw] | None = None
    """The document's blocks when ``type`` is ``content``."""


class DocumentBlock(_Block, tag="document"):
    source: DocumentSource = msgspec.field(default_factory=DocumentSource)
    title: str | None = None


class ToolUseBlock(_Block, tag="tool_use"):
    id: str
    name: str
    input: object = None


class ToolResultBlock(_Block, tag="tool_result"):
    tool_use_id: str
    content: str | list[msgspec.Raw] | None = None
    is_error: bool | None = None


class OtherBlock(msgspec.Struct, frozen=True):
    """A block the gateway accepts and drops: thinking, redacted_thinking, server-tool blocks, newer types."""

    type: str


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | OtherBlock
KNOWN_BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result"})


class _Tag(msgspec.Struct):
    type: str = ""


_tag_decoder = msgspec.json.Decoder(_Tag)
_block_decoder = msgspec.json.Decoder(TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock)


def decode_block(raw: msgspec.Raw) -> Block:
    """Type one content block; raises ``msgspec.ValidationError`` only for a malformed known block."""
    tag = _tag_decoder.decode(raw).type
    if tag not in KNOWN_BLOCK_TYPES:
        return OtherBlock(type=tag)
    block: Block = _block_decoder.decode(raw)
    return block


class MessageParam(msgspec.Struct):
    role: str
    content: str | list[msgspec.Raw] = ""


class ToolParam(msgspec.Struct):
    name: str
    description: str | None = None
    input_schema: dict[str, object] | None = None
    type: str | None = None
    """Absent or ``custom`` for a caller-defined tool; anything else is an Anthropic server tool."""
    defer_loading: bool | None = None


class ToolChoiceParam(msgspec.Struct):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingParam(msgspec.Struct):
    type: str
    budget_tokens: int | None = None


class Metadata(msgspec.Struct):
    user_id: str | None = None


class CountTokensRequest(msgspec.Struct, kw_only=True):
    """The body of ``/v1/messages/count_tokens``: a messages request without the output limits."""

    model: str
    messages: list[MessageParam]
    system: str | list[msgspec.Raw] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = None
    metadata: Metadata | None = None


class MessagesRequest(CountTokensRequest, kw_only=True):
    max_tokens: TokenLimit
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None


# --- the answer and the stream's events --------------------------------------------------------------------------
# Field order is the order the JSON goes out in; ``UNSET`` fields are left out.

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class TextOut(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class ThinkingOut(msgspec.Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str | UnsetType = UNSET
    """Set once the block is closed (a stream's ``content_block_start`` has none)."""


class ToolUseOut(msgspec.Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextOut | ThinkingOut | ToolUseOut


class MessageUsage(msgspec.Struct, kw_only=True):
    """``input_tokens`` leaves out the cached ones, which are ``cache_read_input_tokens`` (docs/dialects.md §4.4)."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(msgspec.Struct, kw_only=True):
    """A non-streamed answer; with ``stream: true`` the same content arrives as ``StreamEvent`` SSE."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: MessageUsage


class InputTokens(msgspec.Struct):
    """``/v1/messages/count_tokens``: the prompt's size as a turn would send it."""

    input_tokens: int


class _Event(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class MessageStartEvent(_Event, tag="message_start"):
    message: Message


class ContentBlockStartEvent(_Event, tag="content_block_start"):
    index: int
    content_block: ContentBlock


class TextDeltaOut(msgspec.Struct, tag="text_delta", tag_field="type"):
    text: str


class ThinkingDeltaOut(msgspec.Struct, tag="thinking_delta", tag_field="type"):
    thinking: str


class SignatureDeltaOut(msgspec.Struct, tag="signature_delta", tag_field="type"):
    signature: str


class InputJsonDeltaOut(msgspec.Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class ContentBlockDeltaEvent(_Event, tag="content_block_delta"):
    index: int
    delta: TextDeltaOut | ThinkingDeltaOut | SignatureDeltaOut | InputJsonDeltaOut


class ContentBlockStopEvent(_Event, tag="content_block_stop"):
    index: int


class StopDetails(msgspec.Struct, kw_only=True):
    stop_reason: StopReason
    stop_sequence: str | None = None


class MessageDeltaEvent(_Event, tag="message_delta"):
    delta: StopDetails
    usage: MessageUsage


class MessageStopEvent(_Event, tag="message_stop"):
    pass


class ErrorDetail(msgspec.Struct):
    type: str
    message: str


class ErrorEvent(_Event, tag="error"):
    """The stream's failure terminal: the error envelope without ``request_id`` (docs/dialects.md §1.5)."""

    error: ErrorDetail


class PingEvent(_Event, tag="ping"):
    pass


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | ErrorEvent
    | PingEvent
)
