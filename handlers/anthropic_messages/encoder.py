"""The Messages stream as a block state machine over sidecar events, and the non-stream answer as a fold over it.

The machine turns internal events into Anthropic stream payloads (docs/dialects.md §4.3): block indices dense
and in start order, one block open at a time, text never opened for whitespace alone before a tool call,
tool input delivered only through ``input_json_delta`` fragments, thinking blocks closed by a signature, and
exactly one terminal: ``message_delta`` + ``message_stop``, or ``error``. The encoder writes those payloads
as SSE; the fold applies them to one ``message`` as the SDKs' accumulators do (§4.2, §4.4: Anthropic
``input_tokens`` excludes cached ones), so the stream and the non-stream answer cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall
from handlers.anthropic_messages.schema import THINKING_SIGNATURE, TOOL_ID_PREFIX, canonical_json
from handlers.errors import anthropic_error_body
from handlers.streaming import fragments, sse_event

__all__ = ("AnthropicEncoder", "BlockMachine", "Payload", "to_message")

Payload = dict[str, Any]


def _tool_input(call: ToolCall) -> str:
    """The call's input as JSON text of an object, whatever the sidecar handed over."""
    if call.kind == "function":
        if not call.arguments.strip():
            return "{}"
        try:
            if isinstance(json.loads(call.arguments), dict):
                return call.arguments
        except ValueError:
            pass
    return canonical_json({"input": call.arguments})


def _delta(index: int, delta: Payload) -> Payload:
    return {"type": "content_block_delta", "index": index, "delta": delta}


class BlockMachine:
    """The block state machine: dense indices, one block open at a time, exactly one terminal."""

    def __init__(self, *, message_id: str, model: str, want_thinking: bool) -> None:
        self._message_id = message_id
        self._model = model
        self._want_thinking = want_thinking
        self._next = 0
        self._open: str | None = None
        self._pending_space = ""
        self._tool_uses = 0
        self._input = (0, 0)
        self.done = False

    def start(self, started: Started) -> Payload:
        self._input = (started.input_tokens, started.cached_input_tokens)
        return {
            "type": "message_start",
            "message": {
                "id": self._message_id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self._usage(*self._input, 0),
            },
        }

    @staticmethod
    def _usage(total: int, cached: int, output: int) -> Payload:
        return {
            "input_tokens": max(0, total - cached),
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        }

    def feed(self, event: Event) -> list[Payload]:
        if self.done:
            return []
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, ReasoningDelta):
            return self._thinking(event.text) if self._want_thinking and event.text else []
        if isinstance(event, ToolCall):
            return self._tool_use(event)
        if isinstance(event, Finished):
            return self._finish(event)
        if isinstance(event, Failed):
            self.done = True
            error = anthropic_error_body(event)["error"]
            return [{"type": "error", "error": error}]
        return []

    def _begin(self, kind: str, block: Payload) -> list[Payload]:
        out = self._close()
        out.append({"type": "content_block_start", "index": self._next, "content_block": block})
        self._next += 1
        self._open = kind
        return out

    def _close(self) -> list[Payload]:
        if self._open is None:
            return []
        index = self._next - 1
        out: list[Payload] = []
        if self._open == "thinking":
            out.append(_delta(index, {"type": "signature_delta", "signature": THINKING_SIGNATURE}))
        out.append({"type": "content_block_stop", "index": index})
        self._open = None
        return out

    def _text(self, text: str) -> list[Payload]:
        if self._open == "text":
            return [_delta(self._next - 1, {"type": "text_delta", "text": text})] if text else []
        # Whitespace before a tool call would be an empty-looking text block: hold it until real text comes.
        if not (self._pending_space + text).strip():
            self._pending_space += text
            return []
        out = self._begin("text", {"type": "text", "text": ""})
        out.append(_delta(self._next - 1, {"type": "text_delta", "text": self._pending_space + text}))
        self._pending_space = ""
        return out

    def _thinking(self, text: str) -> list[Payload]:
        if self._open == "thinking":
            return [_delta(self._next - 1, {"type": "thinking_delta", "thinking": text})]
        out = self._begin("thinking", {"type": "thinking", "thinking": ""})
        out.append(_delta(self._next - 1, {"type": "thinking_delta", "thinking": text}))
        return out

    def _tool_use(self, call: ToolCall) -> list[Payload]:
        self._pending_space = ""
        block = {"type": "tool_use", "id": TOOL_ID_PREFIX + call.id, "name": call.name, "input": {}}
        out = self._begin("tool_use", block)
        index = self._next - 1
        out.extend(_delta(index, {"type": "input_json_delta", "partial_json": p}) for p in fragments(_tool_input(call)))
        out.extend(self._close())
        self._tool_uses += 1
        return out

    def _finish(self, finished: Finished) -> list[Payload]:
        self.done = True
        out = self._close()
        stop_reason = "max_tokens" if finished.reason == "length" else "end_turn"
        if self._tool_uses:
            stop_reason = "tool_use"
        u = finished.usage
        total, cached = (u.input_tokens, u.cached_input_tokens) if u.input_tokens else self._input
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": self._usage(total, cached, u.output_tokens),
            }
        )
        out.append({"type": "message_stop"})
        return out


class AnthropicEncoder:
    """Events in, SSE bytes out (a ``StreamEncoder``, handlers/streaming.py); every event is named by its type."""

    def __init__(self, *, message_id: str, model: str, want_thinking: bool) -> None:
        self._blocks = BlockMachine(message_id=message_id, model=model, want_thinking=want_thinking)

    def start(self, started: Started) -> bytes:
        return _encode([self._blocks.start(started)])

    def feed(self, event: Event) -> bytes:
        return _encode(self._blocks.feed(event))

    def heartbeat(self) -> bytes:
        return b"" if self._blocks.done else sse_event("ping", {"type": "ping"})


def _encode(payloads: list[Payload]) -> bytes:
    return b"".join(sse_event(p["type"], p) for p in payloads)


def _accumulate(message: Payload, payload: Payload, buffers: dict[int, str]) -> None:
    """Apply one stream event to the message, as the SDKs' stream accumulators do."""
    kind = payload["type"]
    if kind == "content_block_start":
        message["content"].append(dict(payload["content_block"]))
    elif kind == "content_block_delta":
        block, delta = message["content"][payload["index"]], payload["delta"]
        if delta["type"] == "text_delta":
            block["text"] += delta["text"]
        elif delta["type"] == "thinking_delta":
            block["thinking"] += delta["thinking"]
        elif delta["type"] == "signature_delta":
            block["signature"] = delta["signature"]
        elif delta["type"] == "input_json_delta":
            buffers[payload["index"]] = buffers.get(payload["index"], "") + delta["partial_json"]
    elif kind == "content_block_stop" and payload["index"] in buffers:
        message["content"][payload["index"]]["input"] = json.loads(buffers.pop(payload["index"]))
    elif kind == "message_delta":
        message.update(payload["delta"])
        message["usage"].update(payload["usage"])


def to_message(events: Sequence[Event], *, message_id: str, model: str, want_thinking: bool) -> Payload:
    """Fold a finished turn's events into one ``message`` object; a ``Failed`` raises its error."""
    blocks = BlockMachine(message_id=message_id, model=model, want_thinking=want_thinking)
    started = next((e for e in events if isinstance(e, Started)), Started(model=model))
    message: Payload = blocks.start(started)["message"]
    buffers: dict[int, str] = {}
    for event in events:
        if isinstance(event, Failed):
            raise GatewayError.carrying(event)
        for payload in blocks.feed(event):
            _accumulate(message, payload, buffers)
    if not blocks.done:
        for payload in blocks.feed(Finished()):
            _accumulate(message, payload, buffers)
    return message
