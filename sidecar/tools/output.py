"""What a tool-call filter hands on: text and recognised calls, in reply order.

Text is joined into as few pieces as possible. A whitespace run touching a call (blank lines before,
between or after calls) is dropped; to know whether it touches one, a trailing run is held until the next
character.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .calls import RecognisedCall

__all__ = ("CallOut", "Out", "Output", "TextOut")


@dataclass(frozen=True)
class TextOut:
    text: str


@dataclass(frozen=True)
class CallOut:
    call: RecognisedCall


Out = TextOut | CallOut


class Output:
    """The decided part of a reply, waiting to be taken."""

    def __init__(self) -> None:
        self._out: list[Out] = []
        self._parts: list[str] = []
        self._after_call = False
        self._pending_ws = ""

    def text(self, text: str) -> None:
        """Text, with a trailing whitespace run held back until it is known not to touch a call."""
        text = self._pending_ws + text
        body = text.rstrip()
        if not body:
            self._pending_ws = text
            return
        self._pending_ws = text[len(body) :]
        if self._after_call:
            body = body.lstrip()
            self._after_call = False
        self._parts.append(body)

    def calls(self, calls: Sequence[RecognisedCall]) -> None:
        """Calls, which drop the whitespace run held before them and the one after them."""
        self._flush()
        self._out.extend(CallOut(call) for call in calls)
        self._pending_ws = ""
        self._after_call = True

    def end(self) -> None:
        """The reply is over: whitespace held at its end goes out unless it follows a call."""
        if not self._after_call and self._pending_ws:
            self._parts.append(self._pending_ws)
        self._pending_ws = ""

    def take(self) -> list[Out]:
        self._flush()
        out, self._out = self._out, []
        return out

    def _flush(self) -> None:
        if self._parts:
            self._out.append(TextOut("".join(self._parts)))
            self._parts.clear()
