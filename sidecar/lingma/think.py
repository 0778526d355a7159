"""Separate Lingma's reasoning from its answer inside ``chat/answer`` text (docs/lingma-protocol.md §5.4).

Lingma writes reasoning inline: ``"\\n````think::{THINK_TIME}\\n" … "\\n````\\n"`` (four backticks; the
placeholder may also be a number), or ``<think>…</think>``. Markers arrive split across chunks, so the
splitter holds back only a tail that could still become a marker and releases everything else at once.
"""

from __future__ import annotations

import re
from typing import Literal

from sidecar.lingma.events import AnswerText, ThinkText

__all__ = ("FENCE_CLOSE", "TAG_CLOSE", "TAG_OPEN", "ThinkSplitter", "fence_open")

FENCE_CLOSE = "\n````\n"
TAG_OPEN = "<think>"
TAG_CLOSE = "</think>"
_FENCE_HEAD = "````think::"
_MAX_LABEL = 64
_FENCE_OPEN_RE = re.compile(rf"\n?````think::[^\n]{{0,{_MAX_LABEL}}}\n")
# A tail that may still grow into a fence opener: a prefix of "\n````think::", or the head plus a label.
_FENCE_TAIL_RE = re.compile(rf"\n?````think::[^\n]{{0,{_MAX_LABEL}}}\Z")

Piece = AnswerText | ThinkText
_Mode = Literal["answer", "fence", "tag"]


def fence_open(label: str = "{THINK_TIME}") -> str:
    """The opening marker as Lingma writes it."""
    return f"\n{_FENCE_HEAD}{label}\n"


class ThinkSplitter:
    """Feed raw answer chunks; get answer and reasoning pieces, never a marker or part of one."""

    def __init__(self) -> None:
        self._mode: _Mode = "answer"
        self._pending = ""

    def feed(self, chunk: str) -> list[Piece]:
        if not self._pending and self._mode == "answer" and _plain(chunk):
            return [AnswerText(chunk)] if chunk else []
        self._pending += chunk
        out: list[Piece] = []
        while self._pending:
            progressed = self._step_answer(out) if self._mode == "answer" else self._step_think(out)
            if not progressed:
                break
        return out

    def finish(self) -> list[Piece]:
        """Release what was held back: an unfinished marker was just text (or an unclosed think block)."""
        rest, self._pending = self._pending, ""
        mode, self._mode = self._mode, "answer"
        if mode == "fence" and rest.endswith(FENCE_CLOSE.rstrip("\n")):
            rest = rest[: -len(FENCE_CLOSE) + 1]
        if not rest:
            return []
        return [AnswerText(rest)] if mode == "answer" else [ThinkText(rest)]

    def _step_answer(self, out: list[Piece]) -> bool:
        text = self._pending
        fence = _FENCE_OPEN_RE.search(text)
        tag = text.find(TAG_OPEN)
        if fence is not None and (tag < 0 or fence.start() <= tag):
            self._emit(out, AnswerText(text[: fence.start()]))
            self._pending = text[fence.end() :]
            self._mode = "fence"
            return True
        if tag >= 0:
            self._emit(out, AnswerText(text[:tag]))
            self._pending = text[tag + len(TAG_OPEN) :]
            self._mode = "tag"
            return True
        hold = _answer_hold(text)
        self._emit(out, AnswerText(text[: len(text) - hold]))
        self._pending = text[len(text) - hold :]
        return False

    def _step_think(self, out: list[Piece]) -> bool:
        text = self._pending
        close = FENCE_CLOSE if self._mode == "fence" else TAG_CLOSE
        at = text.find(close)
        if at >= 0:
            self._emit(out, ThinkText(text[:at]))
            self._pending = text[at + len(close) :]
            self._mode = "answer"
            return True
        hold = _prefix_hold(text, close)
        self._emit(out, ThinkText(text[: len(text) - hold]))
        self._pending = text[len(text) - hold :]
        return False

    @staticmethod
    def _emit(out: list[Piece], piece: Piece) -> None:
        if piece.text:
            out.append(piece)


def _plain(text: str) -> bool:
    """Answer text that holds no marker and ends in none's possible start (each begins with \\n, ` or <)."""
    return "`" not in text and "<" not in text and not text.endswith("\n")


def _answer_hold(text: str) -> int:
    """How many trailing characters could still be the start of an opening marker."""
    fence = _FENCE_TAIL_RE.search(text)
    hold = len(text) - fence.start() if fence is not None else 0
    return max(
        hold,
        _prefix_hold(text, "\n" + _FENCE_HEAD),
        _prefix_hold(text, _FENCE_HEAD),
        _prefix_hold(text, TAG_OPEN),
    )


def _prefix_hold(text: str, marker: str) -> int:
    """The length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
