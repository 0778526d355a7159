"""SSE framing and argument fragments: exact bytes, and fragments that never cut an escape sequence."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from handlers.streaming import ARGUMENT_FRAGMENT, SSE_HEADERS, fragments, sse_comment, sse_data, sse_event

_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[0-9a-fA-F]{4}|\\u[0-9a-fA-F]{4}|\\.")


def test_frames_are_exact() -> None:
    assert sse_data({"a": 1, "b": "é"}) == b'data: {"a":1,"b":"\xc3\xa9"}\n\n'
    assert sse_event("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert sse_comment() == b": keep-alive\n\n"
    assert sse_comment("hi") == b": hi\n\n"


def test_json_with_newlines_stays_on_one_data_line() -> None:
    frame = sse_data({"text": "line one\nline two\r\n"})
    assert frame.count(b"\n") == 2 and frame.endswith(b"\n\n")


def test_streams_are_not_cached_or_buffered() -> None:
    assert SSE_HEADERS["cache-control"].startswith("no-cache")
    assert SSE_HEADERS["x-accel-buffering"] == "no"


def test_short_text_is_one_fragment_and_empty_text_none() -> None:
    assert fragments('{"a": 1}') == ['{"a": 1}']
    assert fragments("") == []


@given(st.text(), st.integers(1, 64))
def test_fragments_join_back_and_never_cut_an_escape(value: str, size: int) -> None:
    text = json.dumps({"command": value})
    pieces = fragments(text, size)
    assert "".join(pieces) == text
    spans = [m.span() for m in _ESCAPE.finditer(text)]
    cut = 0
    for piece in pieces[:-1]:
        cut += len(piece)
        assert not any(start < cut < end for start, end in spans), (text, cut)
        assert size <= len(piece) < size + 12


def test_the_default_size_gives_visible_progress_on_long_arguments() -> None:
    text = json.dumps({"command": "x" * 500})
    pieces = fragments(text)
    assert len(pieces) == -(-len(text) // ARGUMENT_FRAGMENT)
