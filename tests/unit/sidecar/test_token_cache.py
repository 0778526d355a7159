"""Cached token counts equal fresh ones, turn after turn of a growing conversation."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import tokens
from sidecar.tokens import count_tokens

if tokens._encoder() is None:  # pragma: no cover - the sidecar extra is installed in CI
    pytest.skip("the Qwen tokenizer is not installed", allow_module_level=True)


def _fresh(text: str) -> int:
    """The count with no cache at all: every piece tokenized again."""
    count = tokens._encoder()
    assert count is not None
    if not text:
        return 0
    return sum(count(piece) for piece in tokens._pieces(unicodedata.normalize("NFC", text)))


_LINE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
_MESSAGE = st.lists(_LINE, min_size=1, max_size=30).map("\n".join)
# Long messages push the history past the piece size, so the cache sees whole pieces come back.
_BLOCK = st.sampled_from(["", "def f(x):\n    return x  # ünïcödé 中文\n" * 1500, "ls -la\r\n" * 7000, " \t" * 30_000])


@settings(max_examples=25, deadline=None)
@given(turns=st.lists(st.tuples(_MESSAGE, _BLOCK), min_size=1, max_size=6))
def test_cached_count_equals_fresh_count_as_the_history_grows(turns: list[tuple[str, str]]) -> None:
    history = ""
    for message, block in turns:
        history += f"\nUser: {message}{block}\nAssistant: ok"
        assert count_tokens(history) == _fresh(history)
        assert count_tokens(history) == _fresh(history)  # the second time from the cache


def test_a_short_text_counts_as_the_whole_text_does() -> None:
    count = tokens._encoder()
    assert count is not None
    text = "Hello,   world!\n\n  indented\tline 中文 ünïcödé"
    assert count_tokens(text) == count(text)


def test_repeated_history_is_tokenized_once() -> None:
    calls: list[int] = []
    count = tokens._encoder()
    assert count is not None

    def counting(piece: str) -> int:
        calls.append(len(piece))
        return count(piece)

    cache = tokens._PieceCounts()
    piece = "x = 1\n" * 5000
    assert cache.get(counting, piece) == cache.get(counting, piece) == count(piece)
    assert len(calls) == 1
