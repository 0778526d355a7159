"""Cache keys for session reuse: a hash of what a conversation means, not of how a dialect spelled it.

Normalised away (docs/architecture.md §5.1): text vs a single text block, trailing whitespace, JSON argument formatting,
tool-call ids (replaced by their position, since each dialect prefixes ids its own way), where system and
developer text sits (folded into one leading instruction), split assistant items (Responses sends a
message item and function_call items separately). Reasoning never enters the conversation at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from common.conversation import ImagePart, Message, TextPart, ToolCallRecord, ToolSpec

__all__ = ("conversation_key", "merge_assistant_runs")


def _canonical_args(arguments: str, kind: str) -> object:
    if kind == "custom":
        return arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments


def merge_assistant_runs(messages: Sequence[Message]) -> list[Message]:
    """Join consecutive assistant messages into one, as the gateway produced them."""
    out: list[Message] = []
    for msg in messages:
        if msg.role == "assistant" and out and out[-1].role == "assistant":
            prev = out[-1]
            out[-1] = Message(
                role="assistant",
                content=[*prev.content, *msg.content],
                tool_calls=[*prev.tool_calls, *msg.tool_calls],
            )
        else:
            out.append(msg)
    return out


def _parts(msg: Message) -> list[object]:
    text = "".join(p.text for p in msg.content if isinstance(p, TextPart)).rstrip()
    images = [p.source for p in msg.content if isinstance(p, ImagePart)]
    return [text, images] if images else [text]


def conversation_key(fingerprint: str, tools: Sequence[ToolSpec], messages: Sequence[Message]) -> str:
    positions: dict[str, int] = {}

    def position(call_id: str | None) -> object:
        if call_id is None:
            return None
        return positions.get(call_id, call_id)

    instruction = "\n\n".join(t for m in messages if m.role in ("system", "developer") if (t := m.text().strip()))
    body: list[object] = []
    for msg in merge_assistant_runs([m for m in messages if m.role not in ("system", "developer")]):
        calls: list[object] = []
        for call in msg.tool_calls:
            positions.setdefault(call.id, len(positions))
            calls.append([positions[call.id], call.name, call.kind, _canonical_args(call.arguments, call.kind)])
        entry: list[object] = [msg.role, _parts(msg)]
        if calls:
            entry.append(calls)
        if msg.role == "tool":
            entry.append([position(msg.tool_call_id), msg.is_error])
        body.append(entry)
    spec = [[t.name, t.kind, t.description, _canonical_args(t.parameters, "function")] for t in tools]
    payload = json.dumps([fingerprint, spec, instruction, body], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def reply_message(text: str, calls: Sequence[ToolCallRecord]) -> Message:
    """The assistant message the gateway produced, as a client will send it back."""
    return Message(role="assistant", content=[TextPart(text)] if text else [], tool_calls=list(calls))
