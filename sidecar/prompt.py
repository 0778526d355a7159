"""Rendering a conversation into Lingma's ``questionText``.

A fresh session gets the whole transcript (instructions, the tool contract, earlier turns, the new turn);
a reused session gets only the new turn, because Lingma already holds the rest. The newest turn is always
rendered last, so a model (and the simulator) reads the question at the end.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

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


class _Blocks:
    """History blocks already rendered, keyed by the message's own bytes (and the tool name a result borrows).

    An agent resends its whole history each turn; rendering it again message by message (JSON for each call,
    escaping for each result) costs more than encoding the messages, which msgspec does in C. The key is the
    message itself, so a hit is never wrong; ``max_bytes`` bounds what is kept, least recently used first.
    """

    def __init__(self, max_bytes: int = 8_000_000) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._blocks: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()  # prompts are rendered on the offload threads

    def render(self, history: Sequence[Message], names: dict[str, str], encoded: Mapping[int, bytes]) -> list[str]:
        """The blocks of ``history``'s messages (instructions left out), rendering only those not seen before."""
        msgs = [m for m in history if m.role not in ("system", "developer")]
        keys = [self._key(m, names, encoded) for m in msgs]
        with self._lock:
            found = [self._blocks.get(key) for key in keys]
            for key, block in zip(keys, found, strict=True):
                if block is not None:
                    self._blocks.move_to_end(key)
        out: list[str] = []
        for msg, key, block in zip(msgs, keys, found, strict=True):
            if block is None:
                block = _history_block(msg, names)
                self._add(key, block)
            out.append(block)
        return out

    @staticmethod
    def _key(msg: Message, names: dict[str, str], encoded: Mapping[int, bytes]) -> bytes:
        key = encoded.get(id(msg)) or _encode(msg)
        if msg.role == "tool" and msg.name is None and msg.tool_call_id in names:
            key += b"\0" + names[msg.tool_call_id].encode("utf-8", "surrogatepass")
        return key

    def _add(self, key: bytes, block: str) -> None:
        with self._lock:
            if key not in self._blocks:
                self._bytes += len(key) + len(block)
            self._blocks[key] = block
            while self._bytes > self._max_bytes and self._blocks:
                old_key, old_block = self._blocks.popitem(last=False)
                self._bytes -= len(old_key) + len(old_block)


_encode = msgspec.msgpack.Encoder().encode
_BLOCKS = _Blocks()


def _history_block(msg: Message, names: dict[str, str]) -> str:
    body = _render_message(msg, names)
    return body if msg.role == "tool" else f"<{msg.role}>\n{body}\n</{msg.role}>"


def _history_section(history: Sequence[Message], names: dict[str, str], encoded: Mapping[int, bytes]) -> list[str]:
    """The history's lines (joined with newlines by ``render``): one join for the whole prompt, not one each."""
    blocks = _BLOCKS.render(history, names, encoded)
    return ["<conversation_history>", *blocks, "</conversation_history>"] if blocks else []


def render(
    conversation: Conversation,
    *,
    tools: Sequence[ToolSpec],
    choice: ToolChoice,
    encoded: Mapping[int, bytes] | None = None,
) -> RenderedPrompt:
    """The prompt; ``encoded`` may hold the messages' msgpack by ``id`` (``session_key.encode_each``), to share."""
    messages = conversation.messages
    history, new_turn = split_turn(messages)
    names = _call_names(messages)
    new_text = _render_new_turn(new_turn, names)
    parts: list[str] = []
    for section in (
        [_instructions(messages)],
        [render_contract(tools, choice)],
        _history_section(history, names, encoded or {}),
        [new_text if new_text else "Continue."],
    ):
        if section and section[0]:
            parts += ["\n\n", section[0]] if parts else [section[0]]
            for line in section[1:]:
                parts += ["\n", line]
    full = "".join(parts)
    return RenderedPrompt(full=full, reply=new_text, history=history)
