"""The Responses stream encoder and the non-stream fold, checked on the raw SSE bytes.

References: docs/dialects.md §3.3-§3.5.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall, Usage
from handlers.openai_responses.encoder import ResponsesEncoder, to_response
from handlers.openai_responses.schema import ResponsesRequest, ResponseStreamEvent
from handlers.openai_responses.translate import response_skeleton
from handlers.streaming import ARGUMENT_FRAGMENT
from tests.support.responses_sse import check_stream, parse_sse

MODEL = "codex-model"
USAGE = Usage(input_tokens=120, cached_input_tokens=100, output_tokens=9, reasoning_tokens=3)
_decoder = msgspec.json.Decoder(ResponseStreamEvent)


def skeleton(**fields: Any) -> Any:
    req = msgspec.json.decode(json.dumps({"model": MODEL, "input": "hi", **fields}), type=ResponsesRequest)
    return response_skeleton(req, response_id="resp_0123abcd", created_at=1_800_000_000)


def run(events: list[Event], *, want_reasoning: bool = False, heartbeats: int = 0) -> bytes:
    encoder = ResponsesEncoder(skeleton(), want_reasoning=want_reasoning)
    out = encoder.start(Started(model="lingma-key", input_tokens=120))
    out += encoder.heartbeat() * heartbeats
    for event in events:
        out += encoder.feed(event)
    return out


def fold(events: list[Event], *, want_reasoning: bool = False) -> dict[str, Any]:
    response = to_response(events, skeleton=skeleton(), want_reasoning=want_reasoning)
    decoded: dict[str, Any] = json.loads(msgspec.json.encode(response))
    return decoded


def call(ident: str, name: str = "exec_command", arguments: str = '{"cmd":"ls"}', kind: str = "function") -> ToolCall:
    return ToolCall(index=0, id=ident, name=name, arguments=arguments, kind=kind)  # type: ignore[arg-type]


def item_types(raw: bytes) -> list[str]:
    return [item["type"] for item in check_stream(raw, model=MODEL).done_items]


def test_text_turn_follows_the_canonical_order() -> None:
    raw = run([TextDelta(text="Hel"), TextDelta(text="lo"), Finished(reason="stop", usage=USAGE)])
    checked = check_stream(raw, model=MODEL)
    assert checked.types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert checked.done_items[0]["content"][0]["text"] == "Hello"
    assert checked.response["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 129,
    }


def test_the_requested_model_is_echoed_not_the_resolved_key() -> None:
    checked = check_stream(run([TextDelta(text="x"), Finished()]), model=MODEL)
    assert {f.data["response"]["model"] for f in checked.frames if "response" in f.data} == {MODEL}


def test_tool_only_turn_has_no_message_item() -> None:
    raw = run(
        [TextDelta(text="\n"), TextDelta(text="  "), call("a1"), TextDelta(text="\n"), Finished(reason="tool_calls")]
    )
    checked = check_stream(raw, model=MODEL)
    assert [i["type"] for i in checked.done_items] == ["function_call"]
    fc = checked.done_items[0]
    assert (fc["id"], fc["call_id"], fc["name"]) == ("fc_a1", "call_a1", "exec_command")
    assert json.loads(fc["arguments"]) == {"cmd": "ls"}
    assert "response.output_text.delta" not in checked.types


def test_text_then_call_closes_the_message_before_the_call() -> None:
    raw = run([TextDelta(text="Let me look."), call("a1"), Finished(reason="tool_calls")])
    checked = check_stream(raw, model=MODEL)
    assert [i["type"] for i in checked.done_items] == ["message", "function_call"]
    types = checked.types
    assert types.index("response.output_item.done") < types.index("response.function_call_arguments.delta")


def test_text_after_a_call_opens_a_new_message() -> None:
    raw = run([TextDelta(text="one"), call("a1"), TextDelta(text=" "), TextDelta(text="two"), Finished()])
    checked = check_stream(raw, model=MODEL)
    assert [i["type"] for i in checked.done_items] == ["message", "function_call", "message"]
    assert checked.done_items[2]["content"][0]["text"] == " two"
    assert checked.done_items[0]["id"] != checked.done_items[2]["id"]


def test_two_calls_with_awkward_arguments_are_split_and_rejoined() -> None:
    awkward = json.dumps({"cmd": 'printf "a\\nb" > "x y.txt"', "note": "naïve ✓ 雪 " * 10, "n": [1, 2]})
    assert len(awkward) > ARGUMENT_FRAGMENT * 2
    raw = run([call("a1", arguments=awkward), call("b2", name="view_image", arguments=""), Finished()])
    checked = check_stream(raw, model=MODEL)
    first, second = checked.done_items
    assert json.loads(first["arguments"]) == json.loads(awkward)
    assert second["arguments"] == "{}"  # empty arguments still parse as an object
    assert [f.data["output_index"] for f in checked.frames if f.data["type"] == "response.output_item.added"] == [0, 1]
    deltas = [f for f in checked.frames if f.data["type"] == "response.function_call_arguments.delta"]
    assert len([d for d in deltas if d.data["item_id"] == "fc_a1"]) > 2


def test_custom_tool_call_comes_back_as_custom_tool_call() -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
    raw = run([call("p1", name="apply_patch", arguments=patch, kind="custom"), Finished(reason="tool_calls")])
    checked = check_stream(raw, model=MODEL)
    assert checked.done_items == [
        {
            "type": "custom_tool_call",
            "id": "ctc_p1",
            "call_id": "call_p1",
            "name": "apply_patch",
            "input": patch,
            "status": "completed",
        }
    ]
    assert "response.function_call_arguments.delta" not in checked.types
    assert "response.custom_tool_call_input.delta" in checked.types


def test_reasoning_item_precedes_the_message_when_asked_for() -> None:
    events: list[Event] = [
        ReasoningDelta(text="Thinking "),
        ReasoningDelta(text="hard."),
        TextDelta(text="Answer."),
        Finished(usage=USAGE),
    ]
    checked = check_stream(run(events, want_reasoning=True), model=MODEL)
    assert [i["type"] for i in checked.done_items] == ["reasoning", "message"]
    assert checked.done_items[0]["summary"] == [{"type": "summary_text", "text": "Thinking hard."}]
    added = next(f.data for f in checked.frames if f.data["type"] == "response.output_item.added")
    assert added["item"]["summary"] == []


def test_reasoning_is_dropped_when_the_request_did_not_ask() -> None:
    events: list[Event] = [ReasoningDelta(text="hidden"), TextDelta(text="Answer."), Finished()]
    raw = run(events)
    assert item_types(raw) == ["message"]
    assert b"hidden" not in raw


def test_reasoning_after_text_is_its_own_item_then_a_new_message() -> None:
    events: list[Event] = [TextDelta(text="a"), ReasoningDelta(text="r"), TextDelta(text="b"), Finished()]
    assert item_types(run(events, want_reasoning=True)) == ["message", "reasoning", "message"]


def test_upstream_error_mid_stream_is_response_failed_and_nothing_else() -> None:
    encoder = ResponsesEncoder(skeleton(), want_reasoning=False)
    raw = encoder.start(Started(model="x"))
    raw += encoder.feed(TextDelta(text="partial"))
    raw += encoder.feed(Failed(code="upstream_error", message="Lingma failed: boom"))
    after = encoder.feed(TextDelta(text="late")) + encoder.feed(Finished()) + encoder.feed(call("z"))
    assert after == b""
    checked = check_stream(raw, model=MODEL)
    assert checked.types[-1] == "response.failed"
    assert "response.completed" not in checked.types
    assert "response.output_item.done" not in checked.types  # the partial message is not passed off as complete
    assert checked.response["error"] == {"code": "server_error", "message": "Lingma failed: boom"}
    assert checked.response["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(
    ("code", "retry_after", "expected"),
    [
        ("rate_limited", 7.2, "rate_limit_exceeded"),
        ("quota_exhausted", None, "insufficient_quota"),
        ("context_length_exceeded", None, "context_length_exceeded"),
        ("no_capacity", 3.0, "server_is_overloaded"),
        ("upstream_timeout", None, "server_error"),
        ("something_newer", None, "server_error"),
    ],
)
def test_failure_codes_follow_the_table(code: str, retry_after: float | None, expected: str) -> None:
    raw = run([call("a1"), Failed(code=code, message="nope", retry_after_s=retry_after)])
    checked = check_stream(raw, model=MODEL)
    error = checked.response["error"]
    assert error["code"] == expected
    if expected == "rate_limit_exceeded":
        assert re.search(r"try again in 8s", error["message"]), error["message"]
    assert checked.response["output"] == checked.done_items  # the finished call stays on record


def test_length_is_response_incomplete() -> None:
    raw = run([TextDelta(text="cut sho"), Finished(reason="length", usage=USAGE)])
    checked = check_stream(raw, model=MODEL)
    assert checked.types[-1] == "response.incomplete"
    assert checked.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert checked.response["output"][0]["content"][0]["text"] == "cut sho"


def test_heartbeat_is_a_comment() -> None:
    encoder = ResponsesEncoder(skeleton(), want_reasoning=False)
    assert encoder.heartbeat().startswith(b":")
    checked = check_stream(run([TextDelta(text="x"), Finished()], heartbeats=3), model=MODEL)
    assert checked.comments == 3


def test_empty_answer_completes_with_no_items() -> None:
    checked = check_stream(run([TextDelta(text=""), Finished()]), model=MODEL)
    assert checked.done_items == [] and checked.response["output"] == []


def test_request_settings_are_echoed() -> None:
    req_fields = {
        "instructions": "be brief",
        "tool_choice": {"type": "function", "name": "exec_command"},
        "tools": [{"type": "function", "name": "exec_command"}, {"type": "web_search"}],
        "parallel_tool_calls": False,
        "store": False,
        "previous_response_id": "resp_prev",
        "reasoning": {"effort": "high"},
        "text": {"verbosity": "low"},
        "max_output_tokens": 99,
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"k": "v"},
    }
    encoder = ResponsesEncoder(skeleton(**req_fields), want_reasoning=True)
    frames, _ = parse_sse(encoder.start(Started(model="x")))
    response = frames[0].data["response"]
    for key, value in req_fields.items():
        expected = {"effort": "high", "summary": None} if key == "reasoning" else value
        assert response[key] == expected, key


SCENARIOS: dict[str, list[Event]] = {
    "text": [TextDelta(text="Hello"), TextDelta(text=" world"), Finished(usage=USAGE)],
    "tool_only": [TextDelta(text=" "), call("a1"), Finished(reason="tool_calls", usage=USAGE)],
    "mixed": [TextDelta(text="Checking."), call("a1"), Finished(reason="tool_calls")],
    "two_calls": [call("a1"), call("b2", arguments='{"cmd":"pwd"}'), Finished(reason="tool_calls")],
    "custom": [call("p1", name="apply_patch", arguments="*** Begin Patch\n", kind="custom"), Finished()],
    "reasoning": [ReasoningDelta(text="hmm"), TextDelta(text="ok"), Finished(usage=USAGE)],
    "length": [TextDelta(text="abc"), Finished(reason="length")],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_non_stream_fold_equals_the_stream_terminal(name: str) -> None:
    events = SCENARIOS[name]
    checked = check_stream(run(events, want_reasoning=True), model=MODEL)
    assert fold(events, want_reasoning=True) == checked.response


def test_non_stream_failure_raises_the_error() -> None:
    failed = Failed(code="bad_request", message="gone", detail_code="previous_response_not_found")
    with pytest.raises(GatewayError) as info:
        to_response([Started(model="x"), TextDelta(text="a"), failed], skeleton=skeleton(), want_reasoning=False)
    assert info.value.code == "bad_request" and info.value.detail_code == "previous_response_not_found"


def test_non_stream_without_a_terminal_still_completes() -> None:
    assert fold([TextDelta(text="a")])["status"] == "completed"


def test_every_frame_decodes_with_the_schema() -> None:
    for events in SCENARIOS.values():
        for frame in run(events, want_reasoning=True).split(b"\n\n"):
            if frame.startswith(b"event:"):
                _decoder.decode(frame.split(b"\ndata: ", 1)[1])


# --- property --------------------------------------------------------------------------------------------

_texts = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\n", "\n\n  ", "\t"]))


@st.composite
def event_sequences(draw: st.DrawFn) -> list[Event]:
    body: list[Event] = []
    for n in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "text", "reasoning", "call", "custom"]))
        if kind == "text":
            body.append(TextDelta(text=draw(_texts)))
        elif kind == "reasoning":
            body.append(ReasoningDelta(text=draw(_texts)))
        elif kind == "call":
            args = draw(st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=60), st.integers())))
            body.append(call(f"c{n}", arguments=json.dumps(args)))
        else:
            body.append(call(f"c{n}", name="apply_patch", arguments=draw(st.text(max_size=80)), kind="custom"))
    terminal = draw(
        st.one_of(
            st.builds(Finished, reason=st.sampled_from(["stop", "tool_calls", "length", "cancelled"])),
            st.builds(Failed, code=st.sampled_from(["upstream_error", "rate_limited", "internal"]), message=st.text()),
        )
    )
    return [*body, terminal]


@given(events=event_sequences(), want_reasoning=st.booleans(), extra=st.lists(st.booleans(), max_size=3))
def test_any_event_sequence_gives_a_valid_stream(events: list[Event], want_reasoning: bool, extra: list[bool]) -> None:
    trailing: list[Event] = [TextDelta(text="after") if flag else Finished() for flag in extra]
    raw = run(events + trailing, want_reasoning=want_reasoning)
    checked = check_stream(raw, model=MODEL)  # dense sequence numbers, one terminal and it is last, every rule
    for frame in raw.split(b"\n\n"):
        if frame.startswith(b"event:"):
            _decoder.decode(frame.split(b"\ndata: ", 1)[1])
    sent = "".join(e.text for e in events if isinstance(e, TextDelta))
    shown = "".join(
        part["text"] for item in checked.response["output"] if item["type"] == "message" for part in item["content"]
    )
    assert re.sub(r"\s", "", shown) == re.sub(r"\s", "", sent)
    if not isinstance(events[-1], Failed):
        assert fold(events, want_reasoning=want_reasoning) == checked.response
