"""The tools a request offers and the calls recognised in the model's text.

Arguments of a function tool are kept as canonical JSON text: ``json.dumps(obj, ensure_ascii=False,
separators=(",", ":"), allow_nan=False)`` with the model's key order kept. The same model output therefore
always yields the same bytes, whichever format the call was written in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from common.conversation import ToolSpec

__all__ = (
    "RECOGNISERS",
    "OfferedTool",
    "RecognisedCall",
    "Recogniser",
    "ToolKind",
    "arguments_for",
    "canonical_json",
    "decode_json",
    "decode_json_prefix",
    "offered_tools",
)

Recogniser = Literal["contract", "tool_code", "json"]
ToolKind = Literal["function", "custom"]
RECOGNISERS: tuple[Recogniser, ...] = ("contract", "tool_code", "json")


@dataclass(frozen=True)
class OfferedTool:
    name: str
    kind: ToolKind
    properties: tuple[str, ...]
    """The top-level property names of the parameter schema, in schema order."""
    string_properties: frozenset[str] = frozenset()
    """Properties typed ``string``: text-valued formats (Qwen XML parameters) keep these as strings."""


@dataclass(frozen=True)
class RecognisedCall:
    name: str
    arguments: str
    """Canonical JSON text of an object for a function tool; the raw input for a custom tool."""
    kind: ToolKind
    recogniser: Recogniser


class _Invalid(ValueError):
    pass


def _reject_constant(token: str) -> object:
    raise _Invalid(token)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(text: str) -> tuple[bool, object]:
    """Strict JSON (no NaN or Infinity); ``(False, None)`` instead of raising."""
    try:
        return True, _DECODER.decode(text)
    except (ValueError, RecursionError):
        return False, None


def decode_json_prefix(text: str, start: int) -> tuple[bool, object, int]:
    """The JSON value starting at ``text[start]`` and the index after it; ``(False, None, start)`` if none."""
    try:
        value, end = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return False, None, start
    return True, value, end


def canonical_json(value: object) -> str | None:
    """The one canonical text of a JSON value, or None when the value has no JSON form."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None


def _schema_of(parameters: str) -> Mapping[str, object]:
    ok, schema = decode_json(parameters)
    return schema if ok and isinstance(schema, dict) else {}


def offered_tools(specs: Sequence[ToolSpec]) -> dict[str, OfferedTool]:
    """Index the offered tools by name; a schema that does not parse offers no properties."""
    offered: dict[str, OfferedTool] = {}
    for spec in specs:
        props = _schema_of(spec.parameters).get("properties")
        names: tuple[str, ...] = ()
        strings: set[str] = set()
        if isinstance(props, dict):
            names = tuple(k for k in props if isinstance(k, str))
            strings = {k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"}
        offered[spec.name] = OfferedTool(spec.name, spec.kind, names, frozenset(strings))
    return offered


def _custom_input(raw: object) -> str | None:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        value = raw.get("input")
        if isinstance(value, str):
            return value
        values = list(raw.values())
        if len(values) == 1 and isinstance(values[0], str):
            return values[0]
    return None


def arguments_for(tool: OfferedTool, raw: object) -> str | None:
    """The call's arguments in canonical form, or None when they cannot be read as the tool expects.

    ``raw`` is what the model wrote: an object, a JSON string holding an object, or None for "no
    arguments". Custom tools take a string, or an object whose only string value is the input.
    """
    if tool.kind == "custom":
        return _custom_input(raw)
    if raw is None:
        return "{}"
    if isinstance(raw, str):
        if not raw.strip():
            return "{}"
        ok, raw = decode_json(raw)
        if not ok:
            return None
    if isinstance(raw, dict):
        return canonical_json(raw)
    return None
