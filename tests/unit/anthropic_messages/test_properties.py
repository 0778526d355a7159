"""Properties of the encoder over any event sequence: block discipline, one terminal, and stream == fold."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, ReasoningDelta, Started, TextDelta, ToolCall, Usage
from handlers.anthropic_messages.encoder import AnthropicEncoder, to_message
from tests.support.anthropic_sse import check_stream, comparable, parse_sse, sdk_final_message

HEARTBEAT = object()
texts = st.text(alphabet=st.sampled_from([" ", "\n", "\t", "a", "é", '"', "\\", "😀", "{"]), max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
tool_calls = st.builds(
    lambda n, name, args: ToolCall(index=n, id=f"c{n}", name=name, arguments=json.dumps(args)),
    st.integers(0, 99),
    st.sampled_from(["Bash", "Read", "Edit"]),
    st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=4),
)
bodies = st.lists(
    st.one_of(
        st.builds(TextDelta, texts),
        st.builds(ReasoningDelta, texts),
        tool_calls,
        st.just(HEARTBEAT),
    ),
    max_size=14,
)
usages = st.builds(
    lambda total, cached, out: Usage(input_tokens=total + cached, cached_input_tokens=cached, output_tokens=out),
    st.integers(0, 500),
    st.integers(0, 500),
    st.integers(0, 500),
)
terminals = st.one_of(
    st.builds(Finished, reason=st.sampled_from(["stop", "tool_calls", "length", "cancelled"]), usage=usages),
    st.builds(
        Failed, code=st.sampled_from(["upstream_error", "rate_limited", "internal", "nonsense"]), message=st.just("x")
    ),
)


def _visible(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


@given(body=bodies, terminal=terminals, tail=bodies, thinking=st.booleans())
def test_any_event_sequence_keeps_block_discipline_and_one_terminal(
    body: list[Any], terminal: Event, tail: list[Any], thinking: bool
) -> None:
    started = Started(model="m", input_tokens=10, cached_input_tokens=4)
    encoder = AnthropicEncoder(message_id="msg_p", model="m", want_thinking=thinking)
    raw = encoder.start(started)
    for item in [*body, terminal, *tail]:
        raw += encoder.heartbeat() if item is HEARTBEAT else encoder.feed(item)
    summary = check_stream(raw)  # dense indices, started/stopped once, one open block, one terminal
    names = [name for name, _ in parse_sse(raw)]
    assert names.count("message_stop") + names.count("error") == 1
    assert names.count("message_start") == 1

    events: list[Event] = [started, *(e for e in body if e is not HEARTBEAT)]
    sent_text = "".join(e.text for e in events if isinstance(e, TextDelta))
    got_text = "".join(b["text"] for b in summary.blocks if b["type"] == "text")
    assert all(_visible(b["text"]) for b in summary.blocks if b["type"] == "text"), "a whitespace-only text block"
    thoughts = "".join(b["thinking"] for b in summary.blocks if b["type"] == "thinking")
    calls = [e for e in events if isinstance(e, ToolCall)]
    if isinstance(terminal, Finished):
        assert _visible(got_text) == _visible(sent_text)
        assert thoughts == ("".join(e.text for e in events if isinstance(e, ReasoningDelta)) if thinking else "")
        assert [b["input"] for b in summary.blocks if b["type"] == "tool_use"] == [
            json.loads(c.arguments) for c in calls
        ]
        total = terminal.usage.input_tokens or 10  # a Finished without usage keeps Started's count
        assert summary.usage["input_tokens"] + summary.usage["cache_read_input_tokens"] == total
        folded = to_message([*events, terminal], message_id="msg_p", model="m", want_thinking=thinking)
        assert comparable(sdk_final_message(raw)) == comparable(msgspec.to_builtins(folded))
    else:
        assert summary.error is not None
        try:
            to_message([*events, terminal], message_id="msg_p", model="m", want_thinking=thinking)
        except GatewayError:
            pass
        else:
            raise AssertionError("the fold must raise on Failed")
