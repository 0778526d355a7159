"""Content-Length framing: any split or merge of frames across WebSocket messages gives back the frames."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.lingma.framing import FrameParser, encode_message

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_objects = st.dictionaries(st.text(max_size=10), _json_values, max_size=6)
_garbage = st.text(max_size=40).filter(lambda s: "content-length" not in s.lower())


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(text[last:point])
        last = point
    pieces.append(text[last:])
    return pieces


def _feed_all(pieces: list[str]) -> list[dict[str, Any]]:
    parser = FrameParser()
    out: list[dict[str, Any]] = []
    for piece in pieces:
        out += parser.feed(piece)
    return out


@given(st.lists(_objects, max_size=8), st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_of_the_stream_gives_back_every_frame(frames: list[dict[str, Any]], cuts: list[int]) -> None:
    stream = "".join(encode_message(f) for f in frames)
    assert _feed_all(_split(stream, cuts)) == frames


@given(
    st.lists(st.tuples(_garbage, _objects), max_size=6),
    _garbage,
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_garbage_between_frames_is_skipped(items: list[tuple[str, dict[str, Any]]], tail: str, cuts: list[int]) -> None:
    stream = "".join(junk + encode_message(frame) for junk, frame in items) + tail
    assert _feed_all(_split(stream, cuts)) == [frame for _, frame in items]


@given(st.lists(_objects, min_size=1, max_size=5), st.lists(st.integers(min_value=0), max_size=8))
def test_bytes_messages_split_inside_a_character_still_parse(frames: list[dict[str, Any]], cuts: list[int]) -> None:
    data = "".join(encode_message(f) for f in frames).encode("utf-8")
    parser = FrameParser()
    out: list[dict[str, Any]] = []
    points = sorted({c % (len(data) + 1) for c in cuts})
    last = 0
    for point in [*points, len(data)]:
        out += parser.feed(data[last:point])
        last = point
    assert out == frames


def test_length_counts_utf8_bytes() -> None:
    message = encode_message({"text": "通义灵码 🚀"})
    header, _, body = message.partition("\r\n\r\n")
    assert header == f"Content-Length: {len(body.encode('utf-8'))}"
    assert json.loads(body) == {"text": "通义灵码 🚀"}


def test_other_headers_are_tolerated() -> None:
    body = '{"id":1}'
    n = len(body)
    parser = FrameParser()
    frames = parser.feed(
        f"Content-Length: {n}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{body}"
    )
    frames += parser.feed(f"Content-Type: application/json\r\ncontent-length:{n}\r\n\r\n{body}")
    assert frames == [{"id": 1}, {"id": 1}]


def test_bad_frames_are_skipped_without_losing_the_next_one() -> None:
    good = encode_message({"ok": True})
    parser = FrameParser()
    out = parser.feed('{"bare": "json"}')
    out += parser.feed("Content-Length: 2\r\n\r\n[]")  # valid JSON, not an object
    out += parser.feed("Content-Length: 3\r\n\r\n{x}")  # not JSON
    out += parser.feed("Content-Length: lots\r\n\r\n")  # unreadable length
    out += parser.feed(good)
    assert out == [{"ok": True}]
    assert parser.buffered == 0


def test_waits_for_the_rest_of_a_frame() -> None:
    message = encode_message({"a": "b" * 50})
    parser = FrameParser()
    assert parser.feed(message[:-1]) == []
    assert parser.buffered > 0
    assert parser.feed(message[-1]) == [{"a": "b" * 50}]
