"""The stream encoder against every rule of docs/dialects.md §4.3 on raw SSE bytes, and the non-stream fold."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import msgspec
import pytest

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall, Usage
from handlers.anthropic_messages.encoder import AnthropicEncoder, to_message
from handlers.anthropic_messages.schema import THINKING_SIGNATURE, StreamEvent
from handlers.streaming import fragments
from tests.support.anthropic_sse import check_stream, comparable, parse_sse, sdk_final_message

MODEL = "claude-sonnet-4-5"
STARTED = Started(model="qwen", input_tokens=120, cached_input_tokens=50, instance="inst-0")
USAGE = Usage(input_tokens=120, cached_input_tokens=50, output_tokens=9)
BASH_SCHEMA = {"Bash": {"type": "object", "required": ["command"]}}


def encode(events: list[Event], *, thinking: bool = False, started: Started = STARTED) -> bytes:
    encoder = AnthropicEncoder(message_id="msg_test", model=MODEL, want_thinking=thinking)
    return encoder.start(started) + b"".join(encoder.feed(e) for e in events)


def fold(events: list[Event], *, thinking: bool = False, started: Started = STARTED) -> dict[str, Any]:
    """The non-stream body as JSON data, as the route sends it."""
    message = to_message([started, *events], message_id="msg_test", model=MODEL, want_thinking=thinking)
    data: dict[str, Any] = msgspec.to_builtins(message)
    return data


def assert_fold_matches_sdk(raw: bytes, events: list[Event], *, thinking: bool = False) -> dict[str, Any]:
    """The SDK's accumulation of the stream equals the non-stream body built from the same events."""
    message = fold(events, thinking=thinking)
    assert comparable(sdk_final_message(raw)) == comparable(message)
    assert message["stop_reason"] is not None
    return message


def call(index: int, call_id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(index=index, id=call_id, name=name, arguments=json.dumps(arguments, ensure_ascii=False))


def test_text_turn() -> None:
    events: list[Event] = [TextDelta("Hel"), TextDelta(""), TextDelta("lo"), Finished(reason="stop", usage=USAGE)]
    raw = encode(events)
    summary = check_stream(raw, model=MODEL)
    assert summary.blocks == [{"type": "text", "text": "Hello"}]
    assert summary.stop_reason == "end_turn"
    assert summary.start_usage == {
        "input_tokens": 70,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 50,
    }
    assert summary.usage == {**summary.start_usage, "output_tokens": 9}
    message = assert_fold_matches_sdk(raw, events)
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["usage"]["input_tokens"] + message["usage"]["cache_read_input_tokens"] == STARTED.input_tokens


def test_tool_use_only_turn_sends_input_only_through_deltas() -> None:
    events: list[Event] = [call(0, "abc", "Bash", {"command": "ls -la"}), Finished(reason="tool_calls", usage=USAGE)]
    raw = encode(events)
    summary = check_stream(raw, schemas=BASH_SCHEMA)
    assert summary.blocks == [{"type": "tool_use", "id": "toolu_abc", "name": "Bash", "input": {"command": "ls -la"}}]
    assert summary.stop_reason == "tool_use"
    start = next(p for n, p in parse_sse(raw) if n == "content_block_start")
    assert start["content_block"]["input"] == {}
    message = assert_fold_matches_sdk(raw, events)
    assert message["content"][0]["input"] == {"command": "ls -la"}


def test_mixed_turn_and_whitespace_before_a_tool_opens_no_text_block() -> None:
    events: list[Event] = [
        TextDelta("\n"),
        TextDelta("  "),
        call(0, "a1", "Bash", {"command": "pwd"}),
        TextDelta("\n\n"),
        TextDelta("Checked."),
        TextDelta(" "),
        Finished(reason="stop", usage=USAGE),
    ]
    raw = encode(events)
    summary = check_stream(raw, schemas=BASH_SCHEMA)
    assert [b["type"] for b in summary.blocks] == ["tool_use", "text"]
    assert summary.blocks[1]["text"] == "\n\nChecked. "
    assert summary.stop_reason == "tool_use", "any tool_use block makes the stop reason tool_use"
    assert_fold_matches_sdk(raw, events)

    text_first: list[Event] = [TextDelta("Let me look."), TextDelta("\n"), call(0, "b", "Bash", {"command": "ls"})]
    text_first.append(Finished(reason="tool_calls", usage=USAGE))
    summary = check_stream(encode(text_first))
    assert summary.blocks[0] == {"type": "text", "text": "Let me look.\n"}
    assert summary.blocks[1]["id"] == "toolu_b"


def test_whitespace_only_answer_opens_no_block() -> None:
    events: list[Event] = [TextDelta(" \n"), Finished(reason="stop", usage=USAGE)]
    raw = encode(events)
    assert check_stream(raw).blocks == []
    assert assert_fold_matches_sdk(raw, events)["content"] == []


def test_two_tool_turn_gets_dense_indices() -> None:
    events: list[Event] = [
        TextDelta("Two things."),
        call(0, "one", "Bash", {"command": "ls"}),
        call(1, "two", "Read", {"file_path": "/etc/hostname"}),
        Finished(reason="tool_calls", usage=USAGE),
    ]
    raw = encode(events)
    summary = check_stream(raw)
    assert [(b["type"], b.get("id")) for b in summary.blocks] == [
        ("text", None),
        ("tool_use", "toolu_one"),
        ("tool_use", "toolu_two"),
    ]
    starts = [p["index"] for n, p in parse_sse(raw) if n == "content_block_start"]
    assert starts == [0, 1, 2]
    assert_fold_matches_sdk(raw, events)


def test_thinking_enabled_opens_thinking_blocks_signed_before_they_stop() -> None:
    events: list[Event] = [
        ReasoningDelta("Let me "),
        ReasoningDelta("think."),
        TextDelta("Answer"),
        ReasoningDelta("More."),
        call(0, "t", "Bash", {"command": "true"}),
        Finished(reason="tool_calls", usage=USAGE),
    ]
    raw = encode(events, thinking=True)
    summary = check_stream(raw)
    assert [b["type"] for b in summary.blocks] == ["thinking", "text", "thinking", "tool_use"]
    assert summary.blocks[0] == {"type": "thinking", "thinking": "Let me think.", "signature": THINKING_SIGNATURE}
    names = [(n, p.get("delta", {}).get("type")) for n, p in parse_sse(raw)]
    assert names[4:6] == [("content_block_delta", "signature_delta"), ("content_block_stop", None)]
    message = assert_fold_matches_sdk(raw, events, thinking=True)
    assert message["content"][0]["signature"] == THINKING_SIGNATURE


def test_thinking_not_enabled_drops_reasoning() -> None:
    events: list[Event] = [ReasoningDelta("secret"), TextDelta("Answer"), Finished(reason="stop", usage=USAGE)]
    raw = encode(events, thinking=False)
    assert b"thinking" not in raw and b"secret" not in raw
    assert check_stream(raw).blocks == [{"type": "text", "text": "Answer"}]
    assert_fold_matches_sdk(raw, events)


def test_length_is_max_tokens() -> None:
    events: list[Event] = [TextDelta("cut"), Finished(reason="length", usage=USAGE)]
    assert check_stream(encode(events)).stop_reason == "max_tokens"
    assert fold(events)["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("code", "kind"),
    [("upstream_error", "api_error"), ("rate_limited", "rate_limit_error"), ("no_capacity", "overloaded_error")],
)
def test_upstream_error_mid_stream_is_a_typed_error_event_and_nothing_after(code: str, kind: str) -> None:
    encoder = AnthropicEncoder(message_id="msg_e", model=MODEL, want_thinking=False)
    raw = encoder.start(STARTED) + encoder.feed(TextDelta("partial")) + encoder.feed(Failed(code=code, message="boom"))
    raw += encoder.feed(Finished()) + encoder.feed(TextDelta("late")) + encoder.heartbeat()
    summary = check_stream(raw)
    assert summary.error == {"type": kind, "message": "boom"}
    assert b"message_stop" not in raw and b"late" not in raw
    assert raw.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"' + kind.encode() + b'","message":"boom"}}\n\n'
    )
    with pytest.raises(anthropic.APIError, match="boom"):
        sdk_final_message(raw)
    with pytest.raises(GatewayError) as caught:
        fold([TextDelta("partial"), Failed(code=code, message="boom")])
    assert caught.value.code == code


def test_heartbeat_is_a_ping_event_and_exactly_one_terminal() -> None:
    encoder = AnthropicEncoder(message_id="msg_h", model=MODEL, want_thinking=False)
    assert encoder.heartbeat() == b'event: ping\ndata: {"type":"ping"}\n\n'
    raw = encoder.start(STARTED) + encoder.heartbeat() + encoder.feed(TextDelta("x")) + encoder.heartbeat()
    raw += encoder.feed(Finished(usage=USAGE))
    assert encoder.feed(Finished(usage=USAGE)) == b"" and encoder.heartbeat() == b""
    summary = check_stream(raw)
    assert summary.pings == 2 and summary.blocks == [{"type": "text", "text": "x"}]
    assert sdk_final_message(raw).content[0].text == "x"  # type: ignore[union-attr]


def test_hard_arguments_arrive_in_several_fragments_and_parse_back() -> None:
    value = 'line "one"\nline\ttwo \\ back é 漢字 😀 \u0001 ' * 6
    arguments = json.dumps({"content": value, "file_path": "/tmp/x"})  # ASCII escapes, incl. surrogate pairs
    events: list[Event] = [ToolCall(index=0, id="w", name="Write", arguments=arguments), Finished(reason="tool_calls")]
    raw = encode(events)
    summary = check_stream(raw)
    assert len(summary.fragments[0]) > 3
    assert summary.blocks[0]["input"] == {"content": value, "file_path": "/tmp/x"}
    assert assert_fold_matches_sdk(raw, events)["content"][0]["input"]["content"] == value


def escape_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            end = i + (6 if text[i + 1] == "u" else 2)
            spans.append((i, end))
            i = end
        else:
            i += 1
    return spans


def test_fragments_never_cut_inside_an_escape() -> None:
    text = json.dumps({"k": '\\\n\u00e9\U0001f600"' * 40})
    pieces = fragments(text, 5)
    assert "".join(pieces) == text
    cuts = {sum(len(p) for p in pieces[:n]) for n in range(1, len(pieces))}
    for start, end in escape_spans(text):
        assert not {c for c in cuts if start < c < end}, f"cut inside the escape {text[start:end]!r}"
    for pair in (i for i in range(len(text)) if text.startswith("\\ud83d", i)):
        assert not {c for c in cuts if pair < c < pair + 12}, "a surrogate pair is one unit"


def test_empty_and_non_object_arguments_still_give_an_object() -> None:
    events: list[Event] = [
        ToolCall(index=0, id="e", name="CronList", arguments=""),
        ToolCall(index=1, id="c", name="apply", kind="custom", arguments="*** Begin Patch"),
        Finished(reason="tool_calls"),
    ]
    raw = encode(events)
    summary = check_stream(raw)
    assert [b["input"] for b in summary.blocks] == [{}, {"input": "*** Begin Patch"}]
    assert_fold_matches_sdk(raw, events)


def test_usage_falls_back_to_started_when_finished_has_none() -> None:
    summary = check_stream(encode([TextDelta("x"), Finished()]))
    assert summary.usage["input_tokens"] == 70 and summary.usage["cache_read_input_tokens"] == 50


def test_every_stream_event_is_a_typed_event_named_by_its_type() -> None:
    events: list[Event] = [
        ReasoningDelta(text="plan"),
        TextDelta(text="Let me look."),
        call(0, "t1", "Bash", {"command": "ls -la " + "x" * 80}),
        Finished(usage=USAGE),
    ]
    raw = encode(events, thinking=True)
    frames = [frame.split(b"\n") for frame in raw.split(b"\n\n") if frame]
    for name_line, data_line in frames:
        data = data_line.removeprefix(b"data: ")
        typed = msgspec.json.decode(data, type=StreamEvent, strict=True)
        assert name_line == b"event: " + type(typed).__struct_config__.tag.encode()  # type: ignore[union-attr]
        assert msgspec.json.encode(typed) == data
