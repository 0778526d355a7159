"""ThinkSplitter: markers split anywhere never leak into the answer, and reasoning comes out whole."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from sidecar.lingma.events import AnswerText, ThinkText
from sidecar.lingma.think import FENCE_CLOSE, TAG_CLOSE, TAG_OPEN, ThinkSplitter, fence_open

# Plain text may hold backticks, newlines and angle brackets, but no letter of "think", so it cannot
# spell a marker by itself; the interesting cases are at the seams.
_plain = st.text(alphabet="ab xyz\n`<>/{}:_-0123456789通义", max_size=20)
_label = st.sampled_from(["{THINK_TIME}", "1234", "", "12.5s"])


@st.composite
def _documents(draw: st.DrawFn) -> tuple[str, str, str]:
    """(raw text, expected answer, expected reasoning)."""
    raw, answer, think = "", "", ""
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        text = draw(_plain)
        raw, answer = raw + text, answer + text
        if draw(st.booleans()):
            content = draw(_plain)
            if draw(st.booleans()):
                assume((content + FENCE_CLOSE).find(FENCE_CLOSE) == len(content))
                raw += fence_open(draw(_label)) + content + FENCE_CLOSE
            else:
                raw += TAG_OPEN + content + TAG_CLOSE
            think += content
    tail = draw(_plain)
    return raw + tail, answer + tail, think


def _run(chunks: list[str]) -> list[AnswerText | ThinkText]:
    splitter = ThinkSplitter()
    out: list[AnswerText | ThinkText] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out + splitter.finish()


def _join(pieces: list[AnswerText | ThinkText], kind: type) -> str:
    return "".join(p.text for p in pieces if isinstance(p, kind))


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@given(_documents(), st.lists(st.integers(min_value=0), max_size=10))
def test_any_chunking_separates_answer_and_reasoning(doc: tuple[str, str, str], cuts: list[int]) -> None:
    raw, answer, think = doc
    pieces = _run(_chunks(raw, cuts))
    assert _join(pieces, AnswerText) == answer
    assert _join(pieces, ThinkText) == think
    for piece in pieces:
        assert piece.text
        if isinstance(piece, AnswerText):
            assert "think" not in piece.text


@given(_documents())
def test_one_character_at_a_time(doc: tuple[str, str, str]) -> None:
    raw, answer, think = doc
    pieces = _run(list(raw))
    assert (_join(pieces, AnswerText), _join(pieces, ThinkText)) == (answer, think)


def test_every_split_position_of_every_marker() -> None:
    raw = f"before{fence_open()}deep thought{FENCE_CLOSE}middle {TAG_OPEN}more{TAG_CLOSE} after"
    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1):
            pieces = _run([raw[:i], raw[i:j], raw[j:]])
            assert _join(pieces, AnswerText) == "beforemiddle  after", (i, j)
            assert _join(pieces, ThinkText) == "deep thoughtmore", (i, j)


def test_text_is_released_at_once_unless_it_may_start_a_marker() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("hello") == [AnswerText("hello")]
    assert splitter.feed(" world\n``") == [AnswerText(" world")]
    assert splitter.feed("`` code") == [AnswerText("\n```` code")]
    assert splitter.feed(" <thi") == [AnswerText(" ")]
    assert splitter.feed("s>") == [AnswerText("<this>")]


def test_marker_at_the_very_start_and_a_numeric_label() -> None:
    pieces = _run(["````think::", "1532\nwhy", "\n````\nbecause"])
    assert pieces == [ThinkText("why"), AnswerText("because")]


def test_unfinished_prefix_at_the_end_is_plain_text() -> None:
    assert _run(["ends with\n```"]) == [AnswerText("ends with"), AnswerText("\n```")]


def test_unclosed_think_block_stays_reasoning() -> None:
    assert _run([f"a{fence_open()}still thinking\n````"]) == [AnswerText("a"), ThinkText("still thinking")]
    assert _run(["<think>half"]) == [ThinkText("half")]
