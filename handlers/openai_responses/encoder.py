"""The Responses stream as a state machine over sidecar events, and the non-stream answer as a fold over it.

References: docs/dialects.md §3.3-§3.5. Items go out one at a time, each closed before the next is added;
a message item opens only once non-blank text arrives, so a tool-only turn has no message; exactly one
terminal event (``completed``, ``incomplete`` or ``failed``) ends the stream and nothing follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall
from handlers.errors import responses_error
from handlers.openai_responses.schema import (
    CustomToolCallItem,
    FunctionCallItem,
    IncompleteDetails,
    InputTokensDetails,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseCustomToolCallInputDeltaEvent,
    ResponseCustomToolCallInputDoneEvent,
    ResponseError,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
    SummaryText,
)
from handlers.streaming import fragments, sse_comment, sse_event
from handlers.tool_ids import call_id as tool_call_id

__all__ = ("ResponsesEncoder", "encode_event", "to_response")

_TextKind = Literal["message", "reasoning"]


def encode_event(event: ResponseStreamEvent) -> bytes:
    """One SSE frame whose ``event:`` line equals the payload's ``type``."""
    name = type(event).__struct_config__.tag
    assert isinstance(name, str)
    return sse_event(name, event)


@dataclass
class _OpenText:
    kind: _TextKind
    id: str
    index: int
    pieces: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.pieces)


def _usage(finished: Finished) -> ResponseUsage:
    u = finished.usage
    return ResponseUsage(
        input_tokens=u.input_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=u.cached_input_tokens),
        output_tokens=u.output_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=u.reasoning_tokens),
        total_tokens=u.input_tokens + u.output_tokens,
    )


class ResponsesEncoder:
    """Events in, SSE bytes out. ``start`` is the commit point; ``final`` is the terminal's response."""

    def __init__(self, skeleton: Response, *, want_reasoning: bool) -> None:
        self._skeleton = skeleton
        self._want_reasoning = want_reasoning
        self._suffix = skeleton.id.removeprefix("resp_")
        self._seq = 0
        self._done: list[OutputItem] = []
        self._open: _OpenText | None = None
        self._held = ""
        self._held_kind: _TextKind = "message"
        self.final: Response | None = None

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def start(self, started: Started) -> bytes:
        created = ResponseCreatedEvent(sequence_number=self._next(), response=self._skeleton)
        return encode_event(created) + encode_event(
            ResponseInProgressEvent(sequence_number=self._next(), response=self._skeleton)
        )

    def heartbeat(self) -> bytes:
        return sse_comment()

    def feed(self, event: Event) -> bytes:
        return b"".join(encode_event(e) for e in self.events(event))

    def events(self, event: Event) -> list[ResponseStreamEvent]:
        """The stream events for one sidecar event; nothing at all once a terminal went out."""
        if self.final is not None:
            return []
        if isinstance(event, TextDelta):
            return self._text("message", event.text)
        if isinstance(event, ReasoningDelta):
            return self._text("reasoning", event.text) if self._want_reasoning else []
        if isinstance(event, ToolCall):
            return self._close() + self._tool_call(event)
        if isinstance(event, Finished):
            return [*self._close(), self._finish(event)]
        if isinstance(event, Failed):
            return [self._fail(event)]
        return []

    # --- text items ---------------------------------------------------------------------------------------

    def _text(self, kind: _TextKind, text: str) -> list[ResponseStreamEvent]:
        if not text:
            return []
        if self._open is not None and self._open.kind == kind:
            self._open.pieces.append(text)
            return [self._delta(self._open, text)]
        if self._held_kind != kind:
            self._held, self._held_kind = "", kind
        self._held += text
        if not self._held.strip():
            return []  # never open an item for blank text: it may be the gap before a tool call
        text, self._held = self._held, ""
        return [*self._close(), *self._open_item(kind, text)]

    def _open_item(self, kind: _TextKind, text: str) -> list[ResponseStreamEvent]:
        index = len(self._done)
        item = _OpenText(kind, f"{'msg' if kind == 'message' else 'rs'}_{self._suffix}_{index}", index, [text])
        self._open = item
        seq, part_seq = self._next(), self._next()
        added: list[ResponseStreamEvent]
        if kind == "message":
            added = [
                ResponseOutputItemAddedEvent(
                    sequence_number=seq,
                    output_index=index,
                    item=OutputMessage(id=item.id, status="in_progress", content=[]),
                ),
                ResponseContentPartAddedEvent(
                    sequence_number=part_seq,
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    part=OutputText(text=""),
                ),
            ]
        else:
            added = [
                ResponseOutputItemAddedEvent(
                    sequence_number=seq,
                    output_index=index,
                    item=ReasoningItem(id=item.id, summary=[], status="in_progress"),
                ),
                ResponseReasoningSummaryPartAddedEvent(
                    sequence_number=part_seq,
                    item_id=item.id,
                    output_index=index,
                    summary_index=0,
                    part=SummaryText(text=""),
                ),
            ]
        return [*added, self._delta(item, text)]

    def _delta(self, item: _OpenText, text: str) -> ResponseStreamEvent:
        if item.kind == "message":
            return ResponseTextDeltaEvent(
                sequence_number=self._next(), item_id=item.id, output_index=item.index, content_index=0, delta=text
            )
        return ResponseReasoningSummaryTextDeltaEvent(
            sequence_number=self._next(), item_id=item.id, output_index=item.index, summary_index=0, delta=text
        )

    def _close(self) -> list[ResponseStreamEvent]:
        """Finish the open text item, if any, and forget blank text held back."""
        self._held = ""
        item, self._open = self._open, None
        if item is None:
            return []
        text, seq, part_seq = item.text(), self._next(), self._next()
        out: list[ResponseStreamEvent]
        done: OutputItem
        if item.kind == "message":
            done = OutputMessage(id=item.id, status="completed", content=[OutputText(text=text)])
            out = [
                ResponseTextDoneEvent(
                    sequence_number=seq, item_id=item.id, output_index=item.index, content_index=0, text=text
                ),
                ResponseContentPartDoneEvent(
                    sequence_number=part_seq,
                    item_id=item.id,
                    output_index=item.index,
                    content_index=0,
                    part=OutputText(text=text),
                ),
            ]
        else:
            done = ReasoningItem(id=item.id, summary=[SummaryText(text=text)], status="completed")
            out = [
                ResponseReasoningSummaryTextDoneEvent(
                    sequence_number=seq, item_id=item.id, output_index=item.index, summary_index=0, text=text
                ),
                ResponseReasoningSummaryPartDoneEvent(
                    sequence_number=part_seq,
                    item_id=item.id,
                    output_index=item.index,
                    summary_index=0,
                    part=SummaryText(text=text),
                ),
            ]
        self._done.append(done)
        out.append(ResponseOutputItemDoneEvent(sequence_number=self._next(), output_index=item.index, item=done))
        return out

    # --- tool calls ---------------------------------------------------------------------------------------

    def _tool_call(self, call: ToolCall) -> list[ResponseStreamEvent]:
        """A whole call at once: the item added, its input in fragments, the input done, the item done."""
        index, call_id, custom = len(self._done), tool_call_id(call.id), call.kind == "custom"
        item_id = ("ctc_" if custom else "fc_") + call.id
        text = call.arguments if custom else call.arguments or "{}"
        item: OutputItem
        if custom:
            item = CustomToolCallItem(id=item_id, call_id=call_id, name=call.name, input=text, status="completed")
            added: OutputItem = msgspec.structs.replace(item, input="", status="in_progress")
        else:
            item = FunctionCallItem(id=item_id, call_id=call_id, name=call.name, arguments=text, status="completed")
            added = msgspec.structs.replace(item, arguments="", status="in_progress")
        out: list[ResponseStreamEvent] = [
            ResponseOutputItemAddedEvent(sequence_number=self._next(), output_index=index, item=added)
        ]
        delta = ResponseCustomToolCallInputDeltaEvent if custom else ResponseFunctionCallArgumentsDeltaEvent
        out += [
            delta(sequence_number=self._next(), item_id=item_id, output_index=index, delta=piece)
            for piece in fragments(text)
        ]
        seq = self._next()
        if custom:
            out.append(
                ResponseCustomToolCallInputDoneEvent(
                    sequence_number=seq, item_id=item_id, output_index=index, input=text
                )
            )
        else:
            out.append(
                ResponseFunctionCallArgumentsDoneEvent(
                    sequence_number=seq, item_id=item_id, output_index=index, arguments=text, name=call.name
                )
            )
        self._done.append(item)
        out.append(ResponseOutputItemDoneEvent(sequence_number=self._next(), output_index=index, item=item))
        return out

    # --- terminals ----------------------------------------------------------------------------------------

    def _finish(self, finished: Finished) -> ResponseStreamEvent:
        if finished.reason == "length":
            self.final = msgspec.structs.replace(
                self._skeleton,
                status="incomplete",
                incomplete_details=IncompleteDetails(reason="max_output_tokens"),
                output=list(self._done),
                usage=_usage(finished),
            )
            return ResponseIncompleteEvent(sequence_number=self._next(), response=self.final)
        self.final = msgspec.structs.replace(
            self._skeleton, status="completed", output=list(self._done), usage=_usage(finished)
        )
        return ResponseCompletedEvent(sequence_number=self._next(), response=self.final)

    def _fail(self, failed: Failed) -> ResponseStreamEvent:
        output = list(self._done)
        if self._open is not None and self._open.kind == "message":
            # What was streamed so far, marked incomplete; it is never closed with output_item.done.
            text = OutputText(text=self._open.text())
            output.append(OutputMessage(id=self._open.id, status="incomplete", content=[text]))
        self._open = None
        self.final = msgspec.structs.replace(
            self._skeleton, status="failed", error=ResponseError(*responses_error(failed)), output=output
        )
        return ResponseFailedEvent(sequence_number=self._next(), response=self.final)


def to_response(events: list[Event], *, skeleton: Response, want_reasoning: bool) -> Response:
    """Fold a finished turn into one response object; a ``Failed`` raises its error (an HTTP status)."""
    encoder = ResponsesEncoder(skeleton, want_reasoning=want_reasoning)
    for event in events:
        if isinstance(event, Failed):
            raise GatewayError.carrying(event)
        encoder.events(event)
    if encoder.final is None:
        encoder.events(Finished())
    assert encoder.final is not None
    return encoder.final
