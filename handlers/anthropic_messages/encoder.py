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

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall
from handlers.anthropic_messages.schema import (
    THINKING_SIGNATURE,
    TOOL_ID_PREFIX,
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    ErrorDetail,
    ErrorEvent,
    InputJsonDeltaOut,
    Message,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    MessageUsage,
    PingEvent,
    SignatureDeltaOut,
    StopDetails,
    StopReason,
    StreamEvent,
    TextDeltaOut,
    TextOut,
    ThinkingDeltaOut,
    ThinkingOut,
    ToolUseOut,
    canonical_json,
)
from handlers.errors import anthropic_error_body
from handlers.streaming import fragments, sse_event

__all__ = ("AnthropicEncoder", "BlockMachine", "encode_events", "to_message")

_Delta = TextDeltaOut | ThinkingDeltaOut | SignatureDeltaOut | InputJsonDeltaOut


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


def _usage(total: int, cached: int, output: int) -> MessageUsage:
    return MessageUsage(input_tokens=max(0, total - cached), output_tokens=output, cache_read_input_tokens=cached)


class BlockMachine:
    """The block state machine: dense indices, one block open at a time, exactly one terminal."""

    def __init__(self, *, message_id: str, model: str, want_thinking: bool) -> None:
        self._message_id = message_id
        self._model = model
        self._want_thinking = want_thinking
        self._next = 0
        self._open: ContentBlock | None = None
        self._pending_space = ""
        self._tool_uses = 0
        self._input = (0, 0)
        self.done = False

    def start(self, started: Started) -> MessageStartEvent:
        self._input = (started.input_tokens, started.cached_input_tokens)
        message = Message(id=self._message_id, model=self._model, content=[], usage=_usage(*self._input, 0))
        return MessageStartEvent(message=message)

    def feed(self, event: Event) -> list[StreamEvent]:
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
            body = anthropic_error_body(event)["error"]
            assert isinstance(body, dict)
            return [ErrorEvent(error=ErrorDetail(type=body["type"], message=body["message"]))]
        return []

    def _delta(self, delta: _Delta) -> ContentBlockDeltaEvent:
        return ContentBlockDeltaEvent(index=self._next - 1, delta=delta)

    def _begin(self, block: ContentBlock) -> list[StreamEvent]:
        out = self._close()
        out.append(ContentBlockStartEvent(index=self._next, content_block=block))
        self._next += 1
        self._open = block
        return out

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        out: list[StreamEvent] = []
        if isinstance(self._open, ThinkingOut):
            out.append(self._delta(SignatureDeltaOut(signature=THINKING_SIGNATURE)))
        out.append(ContentBlockStopEvent(index=self._next - 1))
        self._open = None
        return out

    def _text(self, text: str) -> list[StreamEvent]:
        if isinstance(self._open, TextOut):
            return [self._delta(TextDeltaOut(text=text))] if text else []
        # Whitespace before a tool call would be an empty-looking text block: hold it until real text comes.
        if not (self._pending_space + text).strip():
            self._pending_space += text
            return []
        out = self._begin(TextOut(text=""))
        out.append(self._delta(TextDeltaOut(text=self._pending_space + text)))
        self._pending_space = ""
        return out

    def _thinking(self, text: str) -> list[StreamEvent]:
        if isinstance(self._open, ThinkingOut):
            return [self._delta(ThinkingDeltaOut(thinking=text))]
        out = self._begin(ThinkingOut(thinking=""))
        out.append(self._delta(ThinkingDeltaOut(thinking=text)))
        return out

    def _tool_use(self, call: ToolCall) -> list[StreamEvent]:
        self._pending_space = ""
        out = self._begin(ToolUseOut(id=TOOL_ID_PREFIX + call.id, name=call.name, input={}))
        out.extend(self._delta(InputJsonDeltaOut(partial_json=p)) for p in fragments(_tool_input(call)))
        out.extend(self._close())
        self._tool_uses += 1
        return out

    def _finish(self, finished: Finished) -> list[StreamEvent]:
        self.done = True
        out = self._close()
        stop_reason: StopReason = "max_tokens" if finished.reason == "length" else "end_turn"
        if self._tool_uses:
            stop_reason = "tool_use"
        u = finished.usage
        total, cached = (u.input_tokens, u.cached_input_tokens) if u.input_tokens else self._input
        usage = _usage(total, cached, u.output_tokens)
        out.append(MessageDeltaEvent(delta=StopDetails(stop_reason=stop_reason), usage=usage))
        out.append(MessageStopEvent())
        return out


def encode_events(events: Sequence[StreamEvent]) -> bytes:
    """SSE frames whose ``event:`` line is each payload's ``type``."""
    return b"".join(sse_event(type(e).__struct_config__.tag, e) for e in events)  # type: ignore[arg-type]


_PING = encode_events([PingEvent()])


class AnthropicEncoder:
    """Events in, SSE bytes out (a ``StreamEncoder``, handlers/streaming.py); every event is named by its type."""

    def __init__(self, *, message_id: str, model: str, want_thinking: bool) -> None:
        self._blocks = BlockMachine(message_id=message_id, model=model, want_thinking=want_thinking)

    def start(self, started: Started) -> bytes:
        return encode_events([self._blocks.start(started)])

    def feed(self, event: Event) -> bytes:
        return encode_events(self._blocks.feed(event))

    def heartbeat(self) -> bytes:
        return b"" if self._blocks.done else _PING


def _accumulate(message: Message, event: StreamEvent, buffers: dict[int, str]) -> None:
    """Apply one stream event to the message, as the SDKs' stream accumulators do."""
    if isinstance(event, ContentBlockStartEvent):
        message.content.append(event.content_block)
    elif isinstance(event, ContentBlockDeltaEvent):
        block, delta = message.content[event.index], event.delta
        if isinstance(delta, TextDeltaOut) and isinstance(block, TextOut):
            block.text += delta.text
        elif isinstance(delta, ThinkingDeltaOut) and isinstance(block, ThinkingOut):
            block.thinking += delta.thinking
        elif isinstance(delta, SignatureDeltaOut) and isinstance(block, ThinkingOut):
            block.signature = delta.signature
        elif isinstance(delta, InputJsonDeltaOut):
            buffers[event.index] = buffers.get(event.index, "") + delta.partial_json
    elif isinstance(event, ContentBlockStopEvent) and event.index in buffers:
        block = message.content[event.index]
        if isinstance(block, ToolUseOut):
            block.input = json.loads(buffers.pop(event.index))
    elif isinstance(event, MessageDeltaEvent):
        message.stop_reason, message.stop_sequence = event.delta.stop_reason, event.delta.stop_sequence
        message.usage = event.usage


def to_message(events: Sequence[Event], *, message_id: str, model: str, want_thinking: bool) -> Message:
    """Fold a finished turn's events into one ``message`` object; a ``Failed`` raises its error."""
    blocks = BlockMachine(message_id=message_id, model=model, want_thinking=want_thinking)
    started = next((e for e in events if isinstance(e, Started)), Started(model=model))
    message = blocks.start(started).message
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
