"""Token counts by pieces equal the count of the whole text, and cached counts equal fresh ones."""

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
_BLOCK = st.sampled_from(
    ["", "def f(x):\n    return x  # ünïcödé 中文\n" * 1500, "ls -la\r\n" * 7000, "x = 1  \t\n\n  y\n" * 4000]
)


def _whole(text: str) -> int:
    """The BPE count of the whole text in one call: what a usage figure must equal."""
    enc = _raw_encoding()
    return len(enc.encode(unicodedata.normalize("NFC", text), allowed_special="all"))


def _raw_encoding() -> object:
    count = tokens._encoder()
    assert count is not None
    return count.__closure__[0].cell_contents  # type: ignore[union-attr]


# Lines that stress the cut places: whitespace of every kind, punctuation before newlines, digits,
# contractions, CJK, combining marks, special tokens, carriage returns.
_ATOM = st.sampled_from(
    [
        " ",
        "  ",
        "\t",
        "\r",
        "\r\n",
        "\n",
        "\n\n",
        "\u3000",
        "\xa0",
        "\u2028",
        "\x1c",
        "\x85",
        ".",
        "!?",
        "```",
        "'s",
        "'ll",
        "don't",
        "123",
        "4",
        "a",
        "word",
        "Ünïcode",
        "e\u0301",
        "中文",
        "😀",
        "<|im_start|>",
        "<|endoftext|>",
        "_",
        "-",
        "{",
        "}\n",
    ]
)
_TEXT = st.lists(_ATOM, min_size=1, max_size=300).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, target=st.integers(min_value=1, max_value=64))
def test_the_count_by_pieces_equals_the_count_of_the_whole_text(text: str, target: int) -> None:
    saved = tokens._TARGET
    tokens._TARGET = target  # tiny pieces: every cut place is used
    try:
        pieces = tokens._pieces(unicodedata.normalize("NFC", text))
        assert "".join(pieces) == unicodedata.normalize("NFC", text)
        assert count_tokens(text) == _whole(text)
    finally:
        tokens._TARGET = saved


@settings(max_examples=25, deadline=None)
@given(turns=st.lists(st.tuples(_MESSAGE, _BLOCK), min_size=1, max_size=6))
def test_cached_count_equals_fresh_count_as_the_history_grows(turns: list[tuple[str, str]]) -> None:
    history = ""
    for message, block in turns:
        history += f"\nUser: {message}{block}\nAssistant: ok"
        assert count_tokens(history) == _fresh(history)
        assert count_tokens(history) == _fresh(history)  # the second time from the cache
        assert count_tokens(history) == _whole(history)


@settings(max_examples=200, deadline=None)
@given(
    start=_TEXT,
    steps=st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), _TEXT), min_size=1, max_size=5),
    target=st.integers(min_value=1, max_value=32),
)
def test_a_text_counted_from_where_it_parts_from_a_recent_one_counts_as_the_whole(
    start: str, steps: list[tuple[int, str]], target: int
) -> None:
    """Each text keeps some of the last one and adds more: appended turns, and edits anywhere before them."""
    saved = tokens._TARGET
    tokens._TARGET = target
    try:
        text = start
        assert count_tokens(text) == _whole(text)
        for keep, more in steps:
            text = text[: keep % (len(text) + 1)] + more
            assert count_tokens(text) == _whole(text)
            assert count_tokens(text + more) == _whole(text + more)
    finally:
        tokens._TARGET = saved


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
