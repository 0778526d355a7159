"""The Chat Completions stream as an encoder over sidecar events, and the non-stream answer as a fold.

References: docs/dialects.md §2.2-§2.5 (the answer, chunk order, tool-call deltas, finish reasons, usage).
The fold reads the same events the encoder does, so the two cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall
from handlers.errors import openai_error_body
from handlers.streaming import fragments, sse_comment, sse_data
from handlers.tool_ids import call_id

__all__ = ("ChatChunkEncoder", "to_completion")

DONE = b"data: [DONE]\n\n"


def _usage(finished: Finished) -> dict[str, Any]:
    u = finished.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _finish_reason(finished: Finished, had_calls: bool) -> str:
    if had_calls:
        return "tool_calls"
    return "length" if finished.reason == "length" else "stop"


class ChatChunkEncoder:
    """Events in, SSE bytes out; ``Finished``/``Failed`` produce the one terminal, then ``[DONE]``."""

    def __init__(self, *, completion_id: str, model: str, created: int, include_usage: bool) -> None:
        self._base: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        self._include_usage = include_usage
        self._calls = 0

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk = {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return sse_data(chunk)

    def start(self, started: Started) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def heartbeat(self) -> bytes:
        return sse_comment()

    def feed(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text}) if event.text else b""
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, ToolCall):
            return self._tool_call(event)
        if isinstance(event, Finished):
            out = self._chunk({}, _finish_reason(event, self._calls > 0))
            if self._include_usage:
                out += sse_data({**self._base, "choices": [], "usage": _usage(event)})
            return out + DONE
        if isinstance(event, Failed):
            return sse_data(openai_error_body(event)) + DONE
        return b""

    def _tool_call(self, call: ToolCall) -> bytes:
        index = self._calls
        self._calls += 1
        args = call.arguments if call.kind == "function" else json.dumps({"input": call.arguments})
        head = {
            "index": index,
            "id": call_id(call.id),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        out = self._chunk({"tool_calls": [head]})
        for piece in fragments(args):
            out += self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return out


def to_completion(events: list[Event], *, completion_id: str, model: str, created: int) -> dict[str, Any]:
    """Fold a finished turn's events into one ``chat.completion`` object."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    finished = Finished()
    for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCall):
            args = event.arguments if event.kind == "function" else json.dumps({"input": event.arguments})
            calls.append(
                {"id": call_id(event.id), "type": "function", "function": {"name": event.name, "arguments": args}}
            )
        elif isinstance(event, Finished):
            finished = event
    content = "".join(text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if calls and not content.strip() else content,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(finished, bool(calls))}
        ],
        "usage": _usage(finished),
    }
