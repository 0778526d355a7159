"""Tools and helpers shared by the tool-calling tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from common.conversation import ToolSpec
from sidecar.tools import CallOut, OfferedTool, Out, RecognisedCall, TextOut, ToolCallFilter, offered_tools

SPECS = [
    ToolSpec(
        name="Bash",
        parameters=json.dumps(
            {"type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}}}
        ),
    ),
    ToolSpec(name="Read", parameters=json.dumps({"type": "object", "properties": {"path": {"type": "string"}}})),
    ToolSpec(name="apply_patch", kind="custom"),
]
TOOLS: dict[str, OfferedTool] = offered_tools(SPECS)


def run(chunks: list[str], tools: dict[str, OfferedTool] | None = None, *, hold_all: bool = False) -> list[Out]:
    """Feed chunks through a filter and merge adjacent text, so results compare across chunkings."""
    f = ToolCallFilter(TOOLS if tools is None else tools, hold_all=hold_all)
    raw: list[Out] = []
    for chunk in chunks:
        raw.extend(f.feed(chunk))
    raw.extend(f.finish())
    return merge_text(raw)


def merge_text(outs: list[Out]) -> list[Out]:
    """``outs`` with each run of adjacent ``TextOut`` joined into one."""
    merged: list[Out] = []
    for out in outs:
        if isinstance(out, TextOut) and merged and isinstance(merged[-1], TextOut):
            merged[-1] = TextOut(merged[-1].text + out.text)
        else:
            merged.append(out)
    return merged


def texts(outs: list[Out]) -> str:
    return "".join(o.text for o in outs if isinstance(o, TextOut))


def calls(outs: list[Out]) -> list[tuple[str, str, str]]:
    return [(o.call.name, o.call.arguments, o.call.recogniser) for o in outs if isinstance(o, CallOut)]


@dataclass(frozen=True)
class Recognition:
    """What ``ToolCallFilter`` makes of one whole reply."""

    items: tuple[Out, ...]
    """Text and calls in reply order; adjacent text is merged."""
    calls: tuple[RecognisedCall, ...]
    text: tuple[str, ...]
    """The text segments left around the calls, in order."""
    parse_failures: int
    leaked_as_text: int


def recognise(text: str, tools: Mapping[str, OfferedTool]) -> Recognition:
    """A whole reply through the streaming filter in one piece, as a turn feeds a one-chunk answer."""
    f = ToolCallFilter(tools)
    items = merge_text([*f.feed(text), *f.finish()])
    return Recognition(
        items=tuple(items),
        calls=tuple(o.call for o in items if isinstance(o, CallOut)),
        text=tuple(o.text for o in items if isinstance(o, TextOut)),
        parse_failures=f.parse_failures,
        leaked_as_text=f.leaked_as_text,
    )
