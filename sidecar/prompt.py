"""Rendering a conversation into Lingma's ``questionText``.

A fresh session gets the whole transcript (instructions, the tool contract, earlier turns, the new turn);
a reused session gets only the new turn, because Lingma already holds the rest. The newest turn is always
rendered last, so a model (and the simulator) reads the question at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.conversation import Conversation, ImagePart, Message, TextPart, ToolChoice, ToolSpec
from sidecar.tools.contract import render_contract, render_tool_calls, render_tool_result

__all__ = ("FORCED_CALL_NUDGE", "RenderedPrompt", "render", "split_turn")

FORCED_CALL_NUDGE = (
    "Your previous reply did not call a tool, but this request requires a tool call. "
    "Reply now with only the tool call, as a <tool_call> block in the required format."
)


@dataclass(frozen=True)
class RenderedPrompt:
    full: str
    """The questionText of a fresh session."""
    reply: str
    """The questionText when the session already holds the history (``isReply``)."""
    history: list[Message]
    """Everything before the new turn; its hash finds a reusable session."""


def split_turn(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """History is everything up to the last assistant message; the new turn is what follows it."""
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return list(messages[: last + 1]), list(messages[last + 1 :])


def _text(msg: Message) -> str:
    pieces: list[str] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ImagePart):
            source = part.source or "inline data"
            pieces.append(f"[image: {source}; images are not visible to this model]")
    return "".join(pieces)


def _instructions(messages: Sequence[Message]) -> str:
    return "\n\n".join(t for m in messages if m.role in ("system", "developer") if (t := _text(m).strip()))


def _call_names(messages: Sequence[Message]) -> dict[str, str]:
    return {call.id: call.name for m in messages for call in m.tool_calls}


def _render_message(msg: Message, names: dict[str, str]) -> str:
    if msg.role == "tool":
        if msg.name is None and msg.tool_call_id in names:
            msg = Message(
                role="tool",
                content=msg.content,
                tool_call_id=msg.tool_call_id,
                name=names[msg.tool_call_id],
                is_error=msg.is_error,
            )
        return render_tool_result(msg)
    text = _text(msg)
    if msg.role == "assistant":
        calls = render_tool_calls(msg.tool_calls)
        return "\n".join(p for p in (text.strip(), calls) if p)
    return text


def _render_new_turn(turn: Sequence[Message], names: dict[str, str]) -> str:
    return "\n\n".join(r for m in turn if m.role not in ("system", "developer") if (r := _render_message(m, names)))


def _render_history(history: Sequence[Message], names: dict[str, str]) -> str:
    blocks: list[str] = []
    for msg in history:
        if msg.role in ("system", "developer"):
            continue
        body = _render_message(msg, names)
        if msg.role == "tool":
            blocks.append(body)
        else:
            blocks.append(f"<{msg.role}>\n{body}\n</{msg.role}>")
    if not blocks:
        return ""
    return "<conversation_history>\n" + "\n".join(blocks) + "\n</conversation_history>"


def render(conversation: Conversation, *, tools: Sequence[ToolSpec], choice: ToolChoice) -> RenderedPrompt:
    messages = conversation.messages
    history, new_turn = split_turn(messages)
    names = _call_names(messages)
    new_text = _render_new_turn(new_turn, names)
    sections = [
        _instructions(messages),
        render_contract(tools, choice),
        _render_history(history, names),
        new_text if new_text else "Continue.",
    ]
    full = "\n\n".join(s for s in sections if s)
    return RenderedPrompt(full=full, reply=new_text, history=history)
