"""Recognising tool calls in streamed text while letting everything else through at once.

Text goes out as soon as it cannot be the start of a call. A span that may be one (a ``<tool_call>`` tag,
a fence whose info string is ``tool_code``, ``json`` or empty, a line opening a JSON object) is held until
it is known: then it becomes calls, or goes out verbatim. Fenced code of any other language passes through
untouched, and nothing inside it is taken for a call. No decision depends on where the chunks split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .calls import RECOGNISERS, OfferedTool, Recogniser
from .contract import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from .json_calls import Outcome, json_body_verdict, key_verdict, parse_contract_body, parse_json_body
from .output import CallOut, Out, Output, TextOut
from .scan import ObjectEnd, closer_ticks, contract_body_verdict, inside_string, may_close, skip
from .tool_code import parse_tool_code

__all__ = ("CallOut", "Out", "TextOut", "ToolCallFilter")

_JSON_INFO = frozenset({"", "json", "jsonc", "json5", "tool_call", "tool_calls"})
_CODE_INFO = frozenset({"tool_code"})
_TEXT_STOP = re.compile(r"[<\n]")
_BLANK = " \t\r\n"
_SLICE = 4096


@dataclass
class _Candidate:
    """A held span at the front of the buffer that may be a call."""

    kind: Literal["contract", "fence", "line"]
    body_start: int
    blank_end: int
    """Where the blanks at the start of the body end, as far as scanned; verdicts start there."""
    search_from: int
    ticks: int = 0
    code: bool = False
    plausible: bool = False
    object_end: ObjectEnd | None = None


@dataclass
class _LineStart:
    """How far the opening of the current line has been scanned while waiting for more of it."""

    indent_end: int = 0
    ticks_end: int = 0
    newline_from: int = 0


class ToolCallFilter:
    """Splits a reply, fed in chunks, into text and recognised calls.

    When no call is recognised, the concatenated text equals the input byte for byte; otherwise only the
    whitespace touching a call is dropped (``sidecar.tools.output``). ``hold_all`` keeps all output until
    ``finish``, so that a turn with a forced tool choice can still be retried.
    """

    def __init__(self, tools: Mapping[str, OfferedTool], *, hold_all: bool = False) -> None:
        self._tools = dict(tools)
        self._hold_all = hold_all
        self._buf = ""
        self._line_start = True
        self._scanned = _LineStart()
        self._fence_ticks = 0
        self._cand: _Candidate | None = None
        self._output = Output()
        self.recognised: dict[Recogniser, int] = dict.fromkeys(RECOGNISERS, 0)
        self.parse_failures = 0
        self.leaked_as_text = 0

    def feed(self, chunk: str) -> list[Out]:
        # Large chunks go in slices: results do not depend on chunking, and a short buffer keeps each
        # decision cheap.
        for i in range(0, len(chunk), _SLICE):
            self._buf += chunk[i : i + _SLICE]
            self._run(final=False)
        return [] if self._hold_all else self._output.take()

    def finish(self) -> list[Out]:
        """Decide everything still held and end the reply."""
        self._run(final=True)
        self._output.end()
        return self._output.take()

    def _run(self, *, final: bool) -> None:
        while self._buf and self._step(final):
            pass

    def _step(self, final: bool) -> bool:
        """Take one decision at the front of the buffer; False when more input is needed first."""
        cand = self._cand
        if cand is not None:
            if cand.kind == "contract":
                return self._step_contract(cand, final)
            if cand.kind == "fence":
                return self._step_fence(cand, final)
            return self._step_line(cand, final)
        if self._fence_ticks:
            return self._step_in_code(final)
        if self._line_start:
            return self._step_line_start(final)
        return self._step_text(final)

    # outside candidates

    def _step_text(self, final: bool) -> bool:
        buf = self._buf
        m = _TEXT_STOP.search(buf)
        if m is None:
            self._emit(len(buf))
            return True
        k = m.start()
        if buf[k] == "\n":
            self._emit(k + 1)
            self._line_start = True
        elif buf.startswith(TOOL_CALL_OPEN, k):
            self._emit(k)
            self._cand = _Candidate("contract", len(TOOL_CALL_OPEN), len(TOOL_CALL_OPEN), len(TOOL_CALL_OPEN))
        elif len(buf) - k < len(TOOL_CALL_OPEN) and TOOL_CALL_OPEN.startswith(buf[k:]) and not final:
            self._emit(k)
            return False
        else:
            self._emit(k + 1)
        return True

    def _step_line_start(self, final: bool) -> bool:
        buf, scanned = self._buf, self._scanned
        j = scanned.indent_end = skip(buf, scanned.indent_end, " \t")
        if j == len(buf):
            if not final:
                return False
            self._emit(j)
        elif buf[j] == "`":
            return self._open_fence(j, final)
        elif buf[j] == "{":
            self._cand = _Candidate("line", j, j + 1, j + 1, object_end=ObjectEnd(j))
        else:
            self._line_start = False
        return True

    def _open_fence(self, j: int, final: bool) -> bool:
        buf, scanned = self._buf, self._scanned
        end = scanned.ticks_end = skip(buf, max(j, scanned.ticks_end), "`")
        if end == len(buf) and not final:
            return False
        if end - j < 3:
            self._line_start = False
            return True
        nl = buf.find("\n", max(end, scanned.newline_from))
        if nl == -1 and not final:
            scanned.newline_from = len(buf)
            return False
        line_end = len(buf) if nl == -1 else nl
        info = buf[end:line_end].strip()
        if "`" in info:
            self._line_start = False
            return True
        word = info.split(maxsplit=1)[0].lower() if info else ""
        after = min(line_end + 1, len(buf))
        if word in _JSON_INFO or word in _CODE_INFO:
            self._cand = _Candidate("fence", after, after, after, ticks=end - j, code=word in _CODE_INFO)
        else:
            self._fence_ticks = end - j
            self._emit(after)
        return True

    def _step_in_code(self, final: bool) -> bool:
        """Inside a fence of another language: pass lines through and watch for the closing fence."""
        buf = self._buf
        nl = buf.find("\n")
        if not self._line_start:
            self._emit(len(buf) if nl == -1 else nl + 1)
            self._line_start = nl != -1
            return True
        if nl == -1 and not final:
            if may_close(buf, 0):
                return False
            self._emit(len(buf))
            self._line_start = False
            return True
        line_end = len(buf) if nl == -1 else nl
        if closer_ticks(buf, 0, line_end) >= self._fence_ticks:
            self._fence_ticks = 0
        self._emit(min(line_end + 1, len(buf)))
        return True

    # candidates

    def _blank_end(self, cand: _Candidate) -> int:
        cand.blank_end = skip(self._buf, cand.blank_end, _BLANK)
        return cand.blank_end

    def _step_contract(self, cand: _Candidate, final: bool) -> bool:
        if not cand.plausible:
            verdict = contract_body_verdict(self._buf, self._blank_end(cand))
            if verdict == "more" and not final:
                return False
            if verdict == "no":
                self._cand = None
                self._emit(len(TOOL_CALL_OPEN))
                return True
            cand.plausible = True
        found = self._contract_end(cand, final)
        if found is None:
            return False
        body_end, end = found
        self._resolve(end, parse_contract_body(self._buf[cand.body_start : body_end], self._tools))
        return True

    def _contract_end(self, cand: _Candidate, final: bool) -> tuple[int, int] | None:
        """Where the body and the block end: at ``</tool_call>``, at the next ``<tool_call>``, or at the end.

        A tag inside a JSON string (a call that writes about tool calls) does not end the block.
        """
        buf = self._buf
        json_body = buf[cand.blank_end : cand.blank_end + 1] in ("{", "[")
        pos = cand.search_from
        while True:
            close = buf.find(TOOL_CALL_CLOSE, pos)
            following = buf.find(TOOL_CALL_OPEN, pos)
            if following != -1 and (close == -1 or following < close):
                marker, end = following, following
            elif close != -1:
                marker, end = close, close + len(TOOL_CALL_CLOSE)
            else:
                break
            if not (json_body and inside_string(buf, cand.blank_end, marker)):
                return marker, end
            pos = marker + 1
        if final:
            return len(buf), len(buf)
        cand.search_from = max(pos, len(buf) - len(TOOL_CALL_CLOSE))
        return None

    def _step_fence(self, cand: _Candidate, final: bool) -> bool:
        buf = self._buf
        pos = cand.search_from
        while (nl := buf.find("\n", pos)) != -1 or (final and pos < len(buf)):
            line_end = len(buf) if nl == -1 else nl
            if closer_ticks(buf, pos, line_end) >= cand.ticks:
                end = skip(buf, buf.index("`", pos), "`")
                self._resolve(end, self._parse_fence(cand, buf[cand.body_start : pos]))
                return True
            pos = line_end + 1
        cand.search_from = pos
        if final:
            self._resolve(len(buf), self._parse_fence(cand, buf[cand.body_start :]))
            return True
        if not cand.code and not cand.plausible:
            verdict = json_body_verdict(buf, self._blank_end(cand))
            if verdict == "no":
                self._cand = None
                self._fence_ticks = cand.ticks
                self._emit(cand.body_start)
                self._line_start = True
                return True
            cand.plausible = verdict == "yes"
        return False

    def _parse_fence(self, cand: _Candidate, body: str) -> Outcome:
        return parse_tool_code(body, self._tools) if cand.code else parse_json_body(body, self._tools)

    def _step_line(self, cand: _Candidate, final: bool) -> bool:
        buf = self._buf
        if not cand.plausible:
            verdict = key_verdict(buf, self._blank_end(cand))
            if verdict == "more" and not final:
                return False
            if verdict != "yes":
                self._cand = None
                self._line_start = False
                return True
            cand.plausible = True
        assert cand.object_end is not None
        end = cand.object_end.advance(buf)
        if end is None:
            if not final:
                return False
            self._cand = None
            self._line_start = False
            return True
        k = skip(buf, end, " \t\r")
        if k == len(buf) and not final:
            return False
        if k < len(buf) and buf[k] != "\n":
            self._cand = None
            self._emit(end)
            self._line_start = False
            return True
        self._resolve(end, parse_json_body(buf[cand.body_start : end], self._tools))
        return True

    # output

    def _consume(self, n: int) -> str:
        text, self._buf = self._buf[:n], self._buf[n:]
        self._scanned = _LineStart()
        return text

    def _resolve(self, end: int, outcome: Outcome) -> None:
        span = self._consume(end)
        self._cand = None
        self._line_start = span.endswith("\n")
        if not outcome.calls:
            self.leaked_as_text += int(outcome.looked_like_call)
            self.parse_failures += int(outcome.failed)
            self._output.text(span)
            return
        for call in outcome.calls:
            self.recognised[call.recogniser] += 1
        self._output.calls(outcome.calls)

    def _emit(self, n: int) -> None:
        self._output.text(self._consume(n))
