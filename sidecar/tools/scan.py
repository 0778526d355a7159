"""Small scanners the streaming filter uses to decide, from a prefix, where a candidate span ends."""

from __future__ import annotations

import re

from .json_calls import Verdict

__all__ = (
    "MAX_FENCE_LINE",
    "ObjectEnd",
    "closer_ticks",
    "contract_body_verdict",
    "inside_string",
    "may_close",
    "skip",
)

MAX_FENCE_LINE = 64
"""A longer line is never a closing fence; this bounds how long a partial line inside code is held."""

_RUNS = {chars: re.compile(f"[{re.escape(chars)}]*") for chars in (" \t", " \t\r", " \t\r\n", "`")}
_IN_STRING_STOP = re.compile(r'["\\]')
_STRUCTURE_STOP = re.compile(r'[{}"]')
_CLOSER = re.compile(r"[ \t]*(`{3,})[ \t\r]*")
_MAYBE_CLOSER = re.compile(r"[ \t]*`*[ \t\r]*")
_XML_START = "<function="


def skip(text: str, i: int, chars: str) -> int:
    """The index after the run of ``chars`` (one of a few fixed sets) that starts at ``i``."""
    run = _RUNS[chars].match(text, i)
    return run.end() if run is not None else i


def closer_ticks(text: str, start: int, end: int) -> int:
    """The backticks of the closing fence that ``text[start:end]`` (one line) is, or 0."""
    if end - start > MAX_FENCE_LINE:
        return 0
    m = _CLOSER.fullmatch(text, start, end)
    return len(m.group(1)) if m is not None else 0


def may_close(text: str, start: int) -> bool:
    """Whether the unfinished line ``text[start:]`` could still become a closing fence."""
    return len(text) - start <= MAX_FENCE_LINE and _MAYBE_CLOSER.fullmatch(text, start) is not None


def inside_string(text: str, start: int, end: int) -> bool:
    """Whether ``text[end]`` falls inside a JSON string of the JSON text starting at ``start``."""
    inside, i = False, start
    while (m := _IN_STRING_STOP.search(text, i, end)) is not None:
        if text[m.start()] == "\\":
            i = m.start() + 2
        else:
            inside, i = not inside, m.start() + 1
    return inside


def contract_body_verdict(text: str, i: int) -> Verdict:
    """Whether the text after ``<tool_call>`` (from its first non-blank ``i``) can be a call body.

    Prose that merely names the tag is released at once instead of being held to the end of the reply.
    """
    if i >= len(text):
        return "more"
    if text[i] in "{[`":
        return "yes"
    rest = text[i : i + len(_XML_START)]
    if not _XML_START.startswith(rest):
        return "no"
    return "yes" if len(rest) == len(_XML_START) else "more"


class ObjectEnd:
    """Finds, incrementally, where the JSON object opening at a given index closes."""

    def __init__(self, start: int) -> None:
        self._pos = start
        self._depth = 0
        self._in_string = False
        self.end: int | None = None

    def advance(self, text: str) -> int | None:
        pos, n = self._pos, len(text)
        while self.end is None and pos < n:
            if self._in_string:
                m = _IN_STRING_STOP.search(text, pos)
                if m is None:
                    pos = n
                elif text[m.start()] == '"':
                    self._in_string, pos = False, m.start() + 1
                else:
                    pos = m.start() + 2
                continue
            m = _STRUCTURE_STOP.search(text, pos)
            if m is None:
                pos = n
                continue
            ch, pos = text[m.start()], m.start() + 1
            if ch == '"':
                self._in_string = True
            else:
                self._depth += 1 if ch == "{" else -1
                if self._depth == 0:
                    self.end = pos
        self._pos = pos
        return self.end
