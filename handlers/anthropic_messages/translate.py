"""An Anthropic Messages (or count_tokens) request, translated into the internal conversation.

References: docs/dialects.md §4.1 (request fields) and §5 (count_tokens reads the same request).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from common.conversation import Conversation, ImagePart, Message, Part, TextPart, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import BadRequestError
from handlers.anthropic_messages.schema import (
    TOOL_ID_PREFIX,
    Block,
    CountTokensRequest,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    OtherBlock,
    TextBlock,
    ToolChoiceParam,
    ToolResultBlock,
    ToolUseBlock,
    canonical_json,
    decode_block,
)
from handlers.policy import check_conversation, check_sampling, no_usable_content, resolve_tool_choice

__all__ = ("to_conversation",)

_BILLING_HEADER = "x-anthropic-billing-header:"
_THINKING_ON = frozenset({"enabled", "adaptive"})
_CHOICES = {"auto": "auto", "any": "required", "none": "none", "tool": "named"}


# -- request -> Conversation ---------------------------------------------------------------------------------


def _blocks(content: str | list[msgspec.Raw] | None) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextBlock(text=content)]
    try:
        return [decode_block(raw) for raw in content]
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"invalid content block: {exc}", param="messages") from None


def _image(block: ImageBlock) -> ImagePart:
    # Lingma's chat takes no images: keep where it came from, never the base64 payload.
    src = block.source
    if src.url:
        return ImagePart(src.url)
    if src.type == "base64":
        return ImagePart(f"data:{src.media_type or 'application/octet-stream'}")
    return ImagePart(f"file:{src.file_id}" if src.file_id else "")


def _document(block: DocumentBlock) -> TextPart:
    src = block.source
    text: str | None = None
    if src.type == "text" and src.data is not None:
        text = src.data
    elif src.type == "content" and src.content is not None:
        text = "\n".join(b.text for b in _blocks(src.content) if isinstance(b, TextBlock))
    if text is None:
        label = block.title or src.url or src.media_type or "attachment"
        return TextPart(f"[document not shown: {label}]")
    return TextPart(f"{block.title}\n\n{text}" if block.title else text)


def _parts(blocks: Sequence[Block]) -> list[Part]:
    """Text, images and documents; every other block is handled by the caller or dropped."""
    out: list[Part] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            out.append(TextPart(block.text))
        elif isinstance(block, ImageBlock):
            out.append(_image(block))
        elif isinstance(block, DocumentBlock):
            out.append(_document(block))
    return out


def _user(blocks: list[Block], names: dict[str, str]) -> list[Message]:
    # Tool results answer the previous assistant turn, so they come before any new text of this turn.
    out: list[Message] = []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            call_id = block.tool_use_id.removeprefix(TOOL_ID_PREFIX)
            out.append(
                Message(
                    role="tool",
                    content=_parts(_blocks(block.content)),
                    tool_call_id=call_id,
                    name=names.get(call_id),
                    is_error=bool(block.is_error),
                )
            )
    parts = _parts(blocks)
    if parts:
        out.append(Message(role="user", content=parts))
    return out


def _assistant(blocks: list[Block], names: dict[str, str]) -> list[Message]:
    calls: list[ToolCallRecord] = []
    for block in blocks:
        if isinstance(block, ToolUseBlock):
            call_id = block.id.removeprefix(TOOL_ID_PREFIX)
            names[call_id] = block.name
            arguments = canonical_json(block.input if block.input is not None else {})
            calls.append(ToolCallRecord(id=call_id, name=block.name, arguments=arguments))
    parts = _parts(blocks)
    if not parts and not calls:
        return []  # only thinking or server-tool blocks: nothing Lingma could use
    return [Message(role="assistant", content=parts, tool_calls=calls)]


def _system_texts(content: str | list[msgspec.Raw] | None) -> list[str]:
    # Claude Code's billing header changes between builds and means nothing to the model.
    texts = [b.text for b in _blocks(content) if isinstance(b, TextBlock)]
    return [t for t in texts if t.strip() and not t.startswith(_BILLING_HEADER)]


def _messages(req: CountTokensRequest, skipped: list[str]) -> list[Message]:
    """One leading system message (the ``system`` field, then inline ``role:"system"`` entries), then the turns."""
    system = _system_texts(req.system)
    names: dict[str, str] = {}
    turns: list[Message] = []
    for msg in req.messages:
        if msg.role == "system":
            system.extend(_system_texts(msg.content))
            continue
        if msg.role not in ("user", "assistant"):
            raise BadRequestError(f"unknown message role {msg.role!r}: use user or assistant", param="messages")
        blocks = _blocks(msg.content)
        skipped.extend(b.type for b in blocks if isinstance(b, OtherBlock))
        turns.extend(_user(blocks, names) if msg.role == "user" else _assistant(blocks, names))
    if not turns:
        if skipped:
            raise no_usable_content(skipped)
        raise BadRequestError("messages must contain at least one user or assistant message", param="messages")
    head = [Message(role="system", content=[TextPart("\n\n".join(system))])] if system else []
    return head + turns


def _tools(req: CountTokensRequest) -> list[ToolSpec]:
    for tool in req.tools or []:
        if tool.type not in (None, "custom"):
            raise BadRequestError(
                f"server tools are not supported by this gateway: {tool.name!r} (type {tool.type}); "
                "define it as a custom tool with an input_schema instead",
                param="tools",
            )
    return [
        ToolSpec(name=t.name, description=t.description or "", parameters=canonical_json(t.input_schema or {}))
        for t in req.tools or []
    ]


def _tool_choice(raw: ToolChoiceParam | None, tools: list[ToolSpec]) -> ToolChoice:
    if raw is None:
        return resolve_tool_choice(ToolChoice(), tools)
    mode = _CHOICES.get(raw.type)
    if mode is None:
        raise BadRequestError(
            f"unknown tool_choice type {raw.type!r}: use auto, any, tool or none", param="tool_choice"
        )
    if mode != "named":
        return resolve_tool_choice(ToolChoice(mode=mode), tools)  # type: ignore[arg-type]
    return resolve_tool_choice(ToolChoice(mode="named", name=raw.name), tools)


def to_conversation(
    req: CountTokensRequest,
    *,
    key_fingerprint: str,
    affinity: str | None,
) -> Conversation:
    """Normalise a messages (or count_tokens) request; ``affinity`` is Claude Code's session header.

    Every offered tool is passed on: the sidecar applies ``TOOL_FORWARD_ENABLED`` and ``TOOL_ALLOWLIST``.
    """
    if not req.model:
        raise BadRequestError("model must not be empty", param="model")
    if isinstance(req, MessagesRequest):
        check_sampling(req.temperature, req.top_p, temperature_max=1.0)
    tools = _tools(req)
    skipped: list[str] = []
    conversation = Conversation(
        model=req.model,
        messages=_messages(req, skipped),
        tools=tools,
        tool_choice=_tool_choice(req.tool_choice, tools),
        max_tokens=req.max_tokens if isinstance(req, MessagesRequest) else None,
        want_reasoning=req.thinking is not None and req.thinking.type in _THINKING_ON,
        affinity=affinity or (req.metadata.user_id if req.metadata else None),
        api_key_fingerprint=key_fingerprint,
    )
    return check_conversation(conversation, skipped=skipped)
