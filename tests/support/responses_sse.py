"""The stream rules of docs/dialects.md §3.3-§3.5 as one validator over raw SSE bytes, for unit and end-to-end tests.

References: docs/dialects.md §1.1 (SSE framing), docs/dialects.md §3.3-§3.5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import captures_dir

CAPTURES = captures_dir()
TERMINALS = ("response.completed", "response.incomplete", "response.failed")
ITEM_TYPES = ("message", "function_call", "custom_tool_call", "reasoning")


@dataclass
class Frame:
    event: str | None
    data: dict[str, Any]


@dataclass
class Checked:
    frames: list[Frame]
    comments: int
    done_items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [f.data["type"] for f in self.frames]

    @property
    def terminal(self) -> dict[str, Any]:
        return self.frames[-1].data

    @property
    def response(self) -> dict[str, Any]:
        response: dict[str, Any] = self.terminal["response"]
        return response


def parse_sse(raw: bytes) -> tuple[list[Frame], int]:
    """Split a stream into events; each ``data:`` must be one line of JSON. Comments are counted."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), "the stream must end at an event boundary"
    frames: list[Frame] = []
    comments = 0
    for block in text.split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            comments += 1
            continue
        event = None
        data_lines = []
        for line in lines:
            if line.startswith("event: "):
                assert event is None, f"two event: lines in {block!r}"
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data_lines.append(line[len("data: ") :])
            else:
                assert line.startswith(":"), f"unexpected SSE line {line!r}"
        assert len(data_lines) == 1, f"each event must carry exactly one single-line data: {block!r}"
        frames.append(Frame(event, json.loads(data_lines[0])))
    return frames, comments


class _Item:
    def __init__(self, index: int, item: dict[str, Any]) -> None:
        self.index = index
        self.added = item
        self.id: str = item["id"]
        self.type: str = item["type"]
        self.steps: list[str] = []
        self.text = ""
        self.args = ""
        self.done: dict[str, Any] | None = None


def _check_added(item: dict[str, Any]) -> None:
    assert item["type"] in ITEM_TYPES, item
    assert isinstance(item["id"], str) and item["id"], "every item needs a non-empty id"
    assert item["status"] == "in_progress", item
    if item["type"] == "message":
        assert item["content"] == [], "a message is added with empty content (docs/dialects.md §3.4)"
        assert item["role"] == "assistant"
    elif item["type"] == "function_call":
        assert item["arguments"] == "" and item["call_id"].startswith("call_") and item["id"].startswith("fc_")
    elif item["type"] == "custom_tool_call":
        assert item["input"] == "" and item["call_id"].startswith("call_") and item["id"].startswith("ctc_")
    else:
        assert item["summary"] == [], "a reasoning item is added with summary: [] (codex-acp#266)"


_STEPS = {
    "message": [
        "response.content_part.added",
        "response.output_text.delta*",
        "response.output_text.done",
        "response.content_part.done",
    ],
    "function_call": ["response.function_call_arguments.delta*", "response.function_call_arguments.done"],
    "custom_tool_call": ["response.custom_tool_call_input.delta*", "response.custom_tool_call_input.done"],
    "reasoning": [
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta*",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ],
}


def _check_steps(item: _Item) -> None:
    """The per-item order of docs/dialects.md §3.4, with deltas collapsed (at least one when there is content)."""
    collapsed: list[str] = []
    for step in item.steps:
        name = step + "*" if step.endswith(".delta") else step
        if not collapsed or collapsed[-1] != name or not name.endswith("*"):
            collapsed.append(name)
    expected = list(_STEPS[item.type])
    if item.type == "custom_tool_call" and not item.args:
        expected.remove("response.custom_tool_call_input.delta*")  # an empty input has nothing to stream
    assert collapsed == expected, f"{item.type} {item.id}: events {collapsed}, expected {expected}"


def _on_item_event(item: _Item, data: dict[str, Any]) -> None:
    kind = data["type"]
    assert data["item_id"] == item.id, f"item_id {data['item_id']} != {item.id}"
    item.steps.append(kind)
    if kind in ("response.content_part.added", "response.content_part.done", "response.output_text.delta"):
        assert item.type == "message" and data["content_index"] == 0
    if kind == "response.content_part.added":
        assert data["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    elif kind == "response.output_text.delta":
        assert "response.content_part.added" in item.steps[:-1], "text delta before content_part.added"
        assert data["logprobs"] == [] and isinstance(data["delta"], str) and data["delta"]
        item.text += data["delta"]
    elif kind == "response.output_text.done":
        assert data["text"] == item.text and data["logprobs"] == [] and data["content_index"] == 0
    elif kind == "response.content_part.done":
        assert data["part"]["type"] == "output_text" and data["part"]["text"] == item.text
    elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
        assert isinstance(data["delta"], str)
        item.args += data["delta"]
    elif kind == "response.function_call_arguments.done":
        assert data["arguments"] == item.args and data["name"] == item.added["name"]
        assert isinstance(json.loads(item.args), dict), "arguments must parse as a JSON object"
    elif kind == "response.custom_tool_call_input.done":
        assert data["input"] == item.args
    elif kind == "response.reasoning_summary_text.delta":
        assert data["summary_index"] == 0
        item.text += data["delta"]
    elif kind == "response.reasoning_summary_text.done":
        assert data["text"] == item.text
    elif kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_part.done"):
        assert data["summary_index"] == 0 and data["part"]["type"] == "summary_text"


def _check_done(item: _Item, done: dict[str, Any]) -> None:
    assert item.done is None, f"{item.id} got a second output_item.done"
    assert (done["type"], done["id"], done.get("call_id")) == (
        item.added["type"],
        item.added["id"],
        item.added.get("call_id"),
    ), "output_item.done must keep type, id and call_id"
    assert done["status"] == "completed"
    _check_steps(item)
    if item.type == "message":
        assert done["content"] == [{"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}]
        assert item.text.strip(), "no message item for blank text"
    elif item.type == "function_call":
        assert isinstance(done["arguments"], str) and done["arguments"] == item.args
    elif item.type == "custom_tool_call":
        assert done["input"] == item.args
    else:
        assert done["summary"] == [{"type": "summary_text", "text": item.text}]
    item.done = done


def _check_usage(usage: dict[str, Any]) -> None:
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert isinstance(usage[key], int), f"usage.{key} must be an integer"
    assert isinstance(usage["input_tokens_details"]["cached_tokens"], int)
    assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def _check_response(response: dict[str, Any], status: str, model: str | None) -> None:
    assert isinstance(response["id"], str) and response["id"].startswith("resp_")
    assert response["object"] == "response" and response["status"] == status
    assert isinstance(response["created_at"], int)
    if model is not None:
        assert response["model"] == model
    for key in ("error", "incomplete_details", "instructions", "output", "parallel_tool_calls", "tool_choice"):
        assert key in response, key
    for key in ("tools", "usage", "previous_response_id", "reasoning", "store", "text", "truncation", "metadata"):
        assert key in response, key
    for key in ("temperature", "top_p", "max_output_tokens"):
        assert key in response, key


def check_stream(raw: bytes, *, model: str | None = None) -> Checked:
    """Assert every rule of docs/dialects.md §3.3-§3.5 that a stream can show; return the parsed stream."""
    frames, comments = parse_sse(raw)
    assert frames, "a stream with no events"
    for seq, frame in enumerate(frames):
        assert frame.event == frame.data["type"], f"event: {frame.event} but type {frame.data['type']}"
        assert frame.data["sequence_number"] == seq, f"sequence_number {frame.data['sequence_number']} at {seq}"
    types = [f.data["type"] for f in frames]
    assert types[0] == "response.created" and types[1] == "response.in_progress"
    created = frames[0].data["response"]
    _check_response(created, "in_progress", model)
    assert created["output"] == [] and created["usage"] is None
    assert frames[1].data["response"]["id"] == created["id"]
    assert sum(t in TERMINALS for t in types) == 1 and types[-1] in TERMINALS, f"one terminal, last: {types}"

    result = Checked(frames, comments)
    items: list[_Item] = []
    current: _Item | None = None
    for frame in frames[2:-1]:
        data = frame.data
        kind = data["type"]
        if kind == "response.output_item.added":
            assert current is None, "items go out one at a time: the previous one is not done"
            assert data["output_index"] == len(items), "output_index is the position in output"
            _check_added(data["item"])
            assert data["item"]["id"] not in {i.id for i in items}, "item ids are unique"
            current = _Item(data["output_index"], data["item"])
            items.append(current)
        elif kind == "response.output_item.done":
            assert current is not None and data["output_index"] == current.index
            _check_done(current, data["item"])
            result.done_items.append(data["item"])
            current = None
        else:
            assert current is not None, f"{kind} outside an open item"
            assert data["output_index"] == current.index, f"{kind} output_index {data['output_index']}"
            _on_item_event(current, data)

    terminal = frames[-1].data
    response = terminal["response"]
    assert response["id"] == created["id"]
    if terminal["type"] == "response.failed":
        _check_response(response, "failed", model)
        error = response["error"]
        assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)
        assert response["output"][: len(result.done_items)] == result.done_items
    else:
        assert current is None, "every added item is done before the terminal"
        status = "completed" if terminal["type"] == "response.completed" else "incomplete"
        _check_response(response, status, model)
        assert response["output"] == result.done_items, "terminal output equals the done items in order"
        _check_usage(response["usage"])
        assert response["error"] is None
        if status == "incomplete":
            assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    return result
