"""Checks of raw Anthropic SSE bytes against every rule of docs/dialects.md §4.3, and an anthropic-SDK replay."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

__all__ = ("StreamSummary", "check_stream", "comparable", "parse_sse", "sdk_final_message")

_DELTA_FOR = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}


def parse_sse(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """Split a body into (event name, JSON data) pairs, strictly: one ``event:`` and one ``data:`` line each."""
    text = raw.decode("utf-8")
    assert "[DONE]" not in text, "an Anthropic stream has no [DONE]"
    assert text.endswith("\n\n"), "the stream must end on an event boundary"
    out: list[tuple[str | None, dict[str, Any]]] = []
    for chunk in text.split("\n\n")[:-1]:
        name: str | None = None
        data: list[str] = []
        for line in chunk.split("\n"):
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            if key == "event":
                assert name is None, f"two event lines in one event: {chunk!r}"
                name = value
            elif key == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        if not data:
            continue
        assert len(data) == 1, "JSON must be serialised on a single data line"
        out.append((name, json.loads(data[0])))
    return out


@dataclass
class StreamSummary:
    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    start_usage: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    pings: int = 0
    fragments: dict[int, list[str]] = field(default_factory=dict)


def _check_start(payload: dict[str, Any], model: str | None) -> dict[str, Any]:
    message = payload["message"]
    assert message["id"].startswith("msg_")
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == []
    assert message["stop_reason"] is None and message["stop_sequence"] is None
    usage = message["usage"]
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert isinstance(usage[key], int), f"message_start usage.{key} must be an integer"
    if model is not None:
        assert message["model"] == model
    return dict(usage)


def _apply_delta(summary: StreamSummary, block: dict[str, Any], index: int, delta: dict[str, Any]) -> None:
    kind = delta["type"]
    assert kind in _DELTA_FOR[block["type"]], f"{kind} sent to a {block['type']} block"
    if kind == "text_delta":
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        assert "signature" not in block, "thinking after the signature"
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        assert delta["signature"], "an empty signature"
        block["signature"] = delta["signature"]
    else:
        assert isinstance(delta["partial_json"], str)
        summary.fragments.setdefault(index, []).append(delta["partial_json"])


def _close_block(summary: StreamSummary, block: dict[str, Any], index: int) -> None:
    if block["type"] == "tool_use":
        pieces = summary.fragments.get(index, [])
        assert any(pieces), "a tool_use block needs at least one non-empty input_json_delta"
        block["input"] = json.loads("".join(pieces))
        assert isinstance(block["input"], dict), "tool input must be a JSON object"
    if block["type"] == "thinking":
        assert block.get("signature"), "a thinking block must get a signature_delta before it stops"


def _check_block_start(payload: dict[str, Any], expected_index: int) -> dict[str, Any]:
    assert payload["index"] == expected_index, "block indices must be dense and in start order"
    block = dict(payload["content_block"])
    kind = block["type"]
    assert kind in _DELTA_FOR, f"unexpected block type {kind} (tool_result is never assistant output)"
    if kind == "text":
        assert block == {"type": "text", "text": ""}
    elif kind == "thinking":
        assert block == {"type": "thinking", "thinking": ""}
    else:
        assert block["id"].startswith("toolu_") and len(block["id"]) > len("toolu_")
        assert isinstance(block["name"], str) and block["name"]
        assert block["input"] == {}, "tool_use starts with input:{}; the input comes through deltas"
    return block


def check_stream(
    raw: bytes, *, model: str | None = None, schemas: dict[str, dict[str, Any]] | None = None
) -> StreamSummary:
    """Assert every rule of docs/dialects.md §4.3 that raw bytes can show; return what the stream said."""
    events = parse_sse(raw)
    assert events, "an empty stream"
    for name, payload in events:
        assert name is not None, f"an event without an event: line: {payload}"
        assert name == payload["type"], f"event: {name} carries data.type {payload['type']}"
    body = [(n, p) for n, p in events if n != "ping"]
    summary = StreamSummary(pings=len(events) - len(body))
    assert body[0][0] == "message_start", "the first event must be message_start"
    summary.start_usage = _check_start(body[0][1], model)
    open_index: int | None = None
    stopped: set[int] = set()
    deltas_seen = 0
    for position, (name, payload) in enumerate(body[1:], start=1):
        assert summary.error is None, "nothing may follow an error event"
        assert name != "message_start", "message_start twice"
        if summary.stop_reason is not None:
            assert name == "message_stop" and position == len(body) - 1, f"{name} after message_delta"
            continue
        if name == "content_block_start":
            assert open_index is None, "a block started while another is open"
            summary.blocks.append(_check_block_start(payload, len(summary.blocks)))
            open_index = payload["index"]
        elif name == "content_block_delta":
            assert payload["index"] == open_index, "a delta for a block that is not open"
            _apply_delta(summary, summary.blocks[payload["index"]], payload["index"], payload["delta"])
        elif name == "content_block_stop":
            assert payload["index"] == open_index and open_index not in stopped, "stop for a block that is not open"
            _close_block(summary, summary.blocks[open_index], open_index)
            stopped.add(open_index)
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "every block must stop before message_delta"
            deltas_seen += 1
            assert payload["delta"]["stop_sequence"] is None
            summary.stop_reason = payload["delta"]["stop_reason"]
            summary.usage = payload["usage"]
            assert isinstance(summary.usage["output_tokens"], int)
        elif name == "error":
            assert set(payload) == {"type", "error"}
            assert payload["error"]["type"] and payload["error"]["message"]
            summary.error = payload["error"]
        else:
            raise AssertionError(f"unexpected event {name}")
    if summary.error is not None:
        assert deltas_seen == 0 and body[-1][0] == "error", "an error is the last event, with no message_stop"
        return summary
    assert deltas_seen == 1, "exactly one message_delta"
    assert body[-1][0] == "message_stop", "the last event is message_stop"
    tools = [b for b in summary.blocks if b["type"] == "tool_use"]
    if tools:
        assert summary.stop_reason == "tool_use"
    else:
        assert summary.stop_reason in ("end_turn", "max_tokens")
    for block in tools:
        schema = (schemas or {}).get(block["name"])
        if schema:
            missing = set(schema.get("required", [])) - set(block["input"])
            assert not missing, f"tool input misses required {missing}"
    return summary


def sdk_final_message(raw: bytes) -> anthropic.types.Message:
    """Feed raw bytes to the real anthropic SDK's ``messages.stream`` and return its final message."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=raw, headers={"content-type": "text/event-stream"})

    client = anthropic.Anthropic(
        api_key="k",
        base_url="http://sdk.invalid",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    with client.messages.stream(model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def comparable(message: Any, *, drop_ids: bool = False) -> dict[str, Any]:
    """A message as a dict without null fields (the stream snapshot adds ``stop_details: None``)."""
    data: dict[str, Any] = message.to_dict(exclude_none=True) if hasattr(message, "to_dict") else dict(message)
    data = anthropic.types.Message.model_validate(data).to_dict(exclude_none=True)
    if drop_ids:
        data.pop("id")
    return data
