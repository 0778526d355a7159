"""One-shot recognition of tool calls in a whole reply.

It runs the streaming filter over the text, so a reply is read the same way whether it arrives in one piece
or in chunks. The recognisers themselves live in ``json_calls`` (the contract's ``<tool_call>`` blocks,
bare and fenced JSON) and ``tool_code`` (Python-style calls in a ``tool_code`` fence).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .calls import OfferedTool, RecognisedCall, Recogniser, offered_tools
from .stream import CallOut, Out, TextOut, ToolCallFilter

__all__ = ("OfferedTool", "RecognisedCall", "Recogniser", "Recognition", "offered_tools", "recognise")


@dataclass(frozen=True)
class Recognition:
    items: tuple[Out, ...]
    """Text and calls in reply order; adjacent text is merged."""
    calls: tuple[RecognisedCall, ...]
    text: tuple[str, ...]
    """The text segments left around the calls, in order."""
    parse_failures: int
    leaked_as_text: int


def recognise(text: str, tools: Mapping[str, OfferedTool]) -> Recognition:
    """Split a complete reply into text and calls of the offered tools; never raises."""
    f = ToolCallFilter(tools)
    items: list[Out] = []
    for out in [*f.feed(text), *f.finish()]:
        if isinstance(out, TextOut) and items and isinstance(items[-1], TextOut):
            items[-1] = TextOut(items[-1].text + out.text)
        else:
            items.append(out)
    return Recognition(
        items=tuple(items),
        calls=tuple(o.call for o in items if isinstance(o, CallOut)),
        text=tuple(o.text for o in items if isinstance(o, TextOut)),
        parse_failures=f.parse_failures,
        leaked_as_text=f.leaked_as_text,
    )
