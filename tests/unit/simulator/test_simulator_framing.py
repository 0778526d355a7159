"""The simulator's own Content-Length parser, fed arbitrary splits and merges of a frame stream."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from sidecar.simulator.framing import UNKNOWN_HEADER, Frame, FrameError, FrameParser, encode_frame

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_messages = st.lists(
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(), "params": _json_values}), max_size=8
)


def _bodies(message: dict[str, object]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode()


@given(messages=_messages, cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=12))
def test_any_split_of_a_frame_stream_yields_the_same_frames(messages: list[dict[str, object]], cuts: list[int]) -> None:
    stream = "".join(encode_frame(_bodies(m).decode()) for m in messages).encode()
    points = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    parser = FrameParser()
    out: list[Frame | FrameError] = []
    for start, end in itertools.pairwise(points):
        out += parser.feed(stream[start:end])
    assert out == [Frame(_bodies(m)) for m in messages]
    assert parser.pending == 0


@given(messages=_messages, sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1))
def test_text_messages_packing_several_frames_each(messages: list[dict[str, object]], sizes: list[int]) -> None:
    frames = [encode_frame(_bodies(m).decode()) for m in messages]
    parser = FrameParser()
    out: list[Frame | FrameError] = []
    i = 0
    for size in sizes * (len(frames) + 1):
        if i >= len(frames):
            break
        out += parser.feed("".join(frames[i : i + size]))
        i += size
    assert out == [Frame(_bodies(m)) for m in messages]


def test_content_length_counts_utf8_bytes() -> None:
    body = '{"text":"héllo ✓ 日本"}'
    assert encode_frame(body).startswith(f"Content-Length: {len(body.encode())}\r\n\r\n")
    assert FrameParser().feed(encode_frame(body)) == [Frame(body.encode())]


def test_bare_json_is_an_unknown_header_and_the_next_frame_still_parses() -> None:
    parser = FrameParser()
    out = parser.feed('{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}')
    assert out == [FrameError(UNKNOWN_HEADER, b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}')]
    assert parser.feed(encode_frame("{}")) == [Frame(b"{}")]


def test_header_without_content_length_is_rejected() -> None:
    out = FrameParser().feed("Content-Type: application/json\r\n\r\n{}")
    assert len(out) == 1
    assert isinstance(out[0], FrameError)
    assert out[0].message == UNKNOWN_HEADER


def test_partial_header_waits_for_more() -> None:
    parser = FrameParser()
    assert parser.feed("Content-Le") == []
    assert parser.feed("ngth: 2\r\n\r") == []
    assert parser.feed("\n{}") == [Frame(b"{}")]
