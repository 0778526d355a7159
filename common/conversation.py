"""The internal conversation: what every dialect normalises a request into before the sidecar sees it.

JSON payloads (tool schemas, call arguments) travel as JSON text so that the wire stays typed and the
sidecar can hash them canonically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from common.errors import BadRequestError

__all__ = (
    "Conversation",
    "ImagePart",
    "Message",
    "Part",
    "Role",
    "TextPart",
    "TokenLimit",
    "ToolCallRecord",
    "ToolChoice",
    "ToolSpec",
)

Role = Literal["system", "developer", "user", "assistant", "tool"]

TokenLimit = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
"""A caller's output-token limit: bounded so that a silly value is a 400, not an overflow further in."""


class TextPart(msgspec.Struct, tag="text", frozen=True):
    text: str


class ImagePart(msgspec.Struct, tag="image", frozen=True):
    """An image the caller sent; Lingma's chat takes none, so it is rendered as a placeholder."""

    source: str = ""
    """A URL, or ``data:<media type>`` without the payload."""


Part = TextPart | ImagePart


class ToolCallRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A tool call the assistant made earlier in the conversation (without a dialect prefix on ``id``)."""

    id: str
    name: str
    arguments: str = "{}"
    """JSON text for a function tool, raw text for a custom tool."""
    kind: Literal["function", "custom"] = "function"


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    role: Role
    content: list[Part] = msgspec.field(default_factory=list)
    tool_calls: list[ToolCallRecord] = msgspec.field(default_factory=list)
    tool_call_id: str | None = None
    """For ``tool`` messages: the call this is the result of."""
    name: str | None = None
    """For ``tool`` messages: the tool's name when the dialect gives it."""
    is_error: bool = False

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class ToolSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    description: str = ""
    parameters: str = "{}"
    """The JSON schema of the arguments, as JSON text."""
    kind: Literal["function", "custom"] = "function"
    """``custom`` tools (Responses freeform tools) take raw text input instead of JSON arguments."""


class ToolChoice(msgspec.Struct, frozen=True, omit_defaults=True):
    mode: Literal["auto", "none", "required", "named"] = "auto"
    name: str | None = None

    def require_offered(self, tools: Sequence[ToolSpec], why: str = "which is not among the tools") -> ToolChoice:
        """A named choice must name an offered tool: anything else is the caller's error, never a guess."""
        if self.mode == "named" and self.name not in {t.name for t in tools}:
            raise BadRequestError(f"tool_choice names {self.name!r}, {why}", param="tool_choice")
        return self


class Conversation(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """One request, normalised. The sidecar renders it into Lingma's ``questionText``."""

    model: str
    messages: list[Message]
    tools: list[ToolSpec] = msgspec.field(default_factory=list)
    tool_choice: ToolChoice = ToolChoice()
    max_tokens: TokenLimit | None = None
    want_reasoning: bool = False
    """Whether the dialect will show reasoning; reasoning is counted either way."""
    affinity: str | None = None
    """A hint for sticky routing: a client session id, a user id, or similar."""
    api_key_fingerprint: str = ""
    api_key_name: str = ""
    """The key's name for usage and the per-key cap (``Settings.key_name``): never the key itself."""
    previous_response_id: str | None = None
    response_id: str | None = None
    """The id the handler will give the answer (Responses), so a later turn can continue from it."""
