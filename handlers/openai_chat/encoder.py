"""The Chat Completions stream as an encoder over sidecar events, and the non-stream answer as a fold.

References: docs/dialects.md §2.2-§2.5 (the answer, chunk order, tool-call deltas, finish reasons, usage).
Both build the typed shapes of ``schema.py`` from the same events, so the two cannot disagree.
"""

from __future__ import annotations

import json

from msgspec import UNSET

from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall
from handlers.errors import openai_error_body
from handlers.openai_chat.schema import (
    AnswerFunctionCall,
    AnswerToolCall,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    ChunkDelta,
    CompletionTokensDetails,
    CompletionUsage,
    FinishReason,
    FunctionDelta,
    PromptTokensDetails,
    ToolCallDelta,
)
from handlers.streaming import fragments, sse_comment, sse_data
from handlers.tool_ids import call_id

__all__ = ("ChatChunkEncoder", "to_completion")

DONE = b"data: [DONE]\n\n"


def _usage(finished: Finished) -> CompletionUsage:
    u = finished.usage
    return CompletionUsage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        total_tokens=u.input_tokens + u.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cached_input_tokens),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=u.reasoning_tokens),
    )


def _finish_reason(finished: Finished, had_calls: bool) -> FinishReason:
    if had_calls:
        return "tool_calls"
    return "length" if finished.reason == "length" else "stop"


def _arguments(call: ToolCall) -> str:
    """A custom (free-text) call's input as the arguments of a function with one ``input`` field."""
    return call.arguments if call.kind == "function" else json.dumps({"input": call.arguments})


class ChatChunkEncoder:
    """Events in, SSE bytes out; ``Finished``/``Failed`` produce the one terminal, then ``[DONE]``."""

    def __init__(self, *, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._calls = 0

    def _chunk(self, delta: ChunkDelta, finish_reason: FinishReason | None = None) -> bytes:
        return sse_data(
            ChatCompletionChunk(
                id=self._id,
                created=self._created,
                model=self._model,
                choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
                usage=None if self._include_usage else UNSET,
            )
        )

    def start(self, started: Started) -> bytes:
        return self._chunk(ChunkDelta(role="assistant", content=""))

    def heartbeat(self) -> bytes:
        return sse_comment()

    def feed(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk(ChunkDelta(content=event.text)) if event.text else b""
        if isinstance(event, ReasoningDelta):
            return self._chunk(ChunkDelta(reasoning_content=event.text)) if event.text else b""
        if isinstance(event, ToolCall):
            return self._tool_call(event)
        if isinstance(event, Finished):
            out = self._chunk(ChunkDelta(), _finish_reason(event, self._calls > 0))
            if self._include_usage:
                last = ChatCompletionChunk(
                    id=self._id, created=self._created, model=self._model, choices=[], usage=_usage(event)
                )
                out += sse_data(last)
            return out + DONE
        if isinstance(event, Failed):
            return sse_data(openai_error_body(event)) + DONE
        return b""

    def _tool_call(self, call: ToolCall) -> bytes:
        index = self._calls
        self._calls += 1
        head = ToolCallDelta(
            index=index, id=call_id(call.id), type="function", function=FunctionDelta(name=call.name, arguments="")
        )
        out = self._chunk(ChunkDelta(tool_calls=[head]))
        for piece in fragments(_arguments(call)):
            out += self._chunk(
                ChunkDelta(tool_calls=[ToolCallDelta(index=index, function=FunctionDelta(arguments=piece))])
            )
        return out


def to_completion(events: list[Event], *, completion_id: str, model: str, created: int) -> ChatCompletion:
    """Fold a finished turn's events into one ``chat.completion`` object."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[AnswerToolCall] = []
    finished = Finished()
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCall):
            function = AnswerFunctionCall(name=event.name, arguments=_arguments(event))
            calls.append(AnswerToolCall(id=call_id(event.id), type="function", function=function))
        elif isinstance(event, Finished):
            finished = event
    content = "".join(text)
    message = AssistantMessage(
        content=None if calls and not content.strip() else content,
        reasoning_content="".join(reasoning) if reasoning else UNSET,
        tool_calls=calls or UNSET,
    )
    choice = Choice(message=message, finish_reason=_finish_reason(finished, bool(calls)))
    return ChatCompletion(id=completion_id, created=created, model=model, choices=[choice], usage=_usage(finished))
