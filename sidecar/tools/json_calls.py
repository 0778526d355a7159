"""Calls written as JSON objects: the contract's ``<tool_call>`` body and bare or fenced JSON.

Also reads Qwen3-Coder's ``<function=NAME><parameter=K>V</parameter></function>`` body, which that model
writes inside ``<tool_call>`` tags out of habit even when shown the JSON form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .calls import OfferedTool, RecognisedCall, Recogniser, arguments_for, decode_json, decode_json_prefix
from .contract import TOOL_CALL_OPEN

__all__ = (
    "CALL_KEYS",
    "Outcome",
    "Verdict",
    "first_key_verdict",
    "json_body_verdict",
    "key_verdict",
    "parse_contract_body",
    "parse_json_body",
)

_NAME_KEYS = ("name", "tool", "function", "tool_name")
_ARG_KEYS = ("arguments", "input", "parameters", "args")
CALL_KEYS = frozenset((*_NAME_KEYS, *_ARG_KEYS, "id", "type", "call_id"))
"""The only keys a call-shaped object may have; anything else makes it data, not a call."""

Verdict = Literal["yes", "no", "more"]


@dataclass(frozen=True)
class Outcome:
    """What a candidate span turned out to be. With no calls, the span goes out as text."""

    calls: tuple[RecognisedCall, ...] = ()
    looked_like_call: bool = False
    failed: bool = False


_NOT_A_CALL = Outcome()
_FAILED = Outcome(looked_like_call=True, failed=True)
_WS = " \t\r\n"
_WS_RUN = re.compile(r"[ \t\r\n]*")
_KEY_STOP = re.compile(r'["\\]')
_MAX_KEY = 16


def _skip_ws(text: str, i: int) -> int:
    run = _WS_RUN.match(text, i)
    return run.end() if run is not None else i


def _json_values(text: str) -> list[object] | None:
    """One or more JSON values separated by whitespace, or None if anything else is there."""
    values: list[object] = []
    i = _skip_ws(text, 0)
    while i < len(text):
        ok, value, i = decode_json_prefix(text, i)
        if not ok:
            return None
        values.append(value)
        i = _skip_ws(text, i)
    return values or None


def _name_and_raw(obj: dict[object, object]) -> tuple[str | None, object]:
    if not all(k in CALL_KEYS for k in obj):
        return None, None
    function = obj.get("function")
    if isinstance(function, dict):
        name = function.get("name")
        raw = next((function[k] for k in _ARG_KEYS if k in function), None)
    else:
        name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
        raw = next((obj[k] for k in _ARG_KEYS if k in obj), None)
    return (name if isinstance(name, str) else None), raw


def _from_objects(objects: list[object], tools: Mapping[str, OfferedTool], recogniser: Recogniser) -> Outcome:
    """All objects must be calls of offered tools, or the whole span stays text."""
    calls: list[RecognisedCall] = []
    looked = failed = rejected = False
    for obj in objects:
        name, raw = _name_and_raw(obj) if isinstance(obj, dict) else (None, None)
        tool = tools.get(name) if name is not None else None
        looked = looked or name is not None
        arguments = arguments_for(tool, raw) if tool is not None else None
        if tool is None or arguments is None:
            failed = failed or tool is not None
            rejected = True
            continue
        calls.append(RecognisedCall(tool.name, arguments, tool.kind, recogniser))
    if rejected or not calls:
        return Outcome(looked_like_call=looked, failed=failed)
    return Outcome(tuple(calls), looked_like_call=True)


def _from_json(text: str, tools: Mapping[str, OfferedTool], recogniser: Recogniser) -> Outcome:
    values = _json_values(text)
    if values is None:
        return _NOT_A_CALL
    objects: list[object] = []
    for value in values:
        objects.extend(value if isinstance(value, list) else [value])
    return _from_objects(objects, tools, recogniser)


_FUNCTION = re.compile(r"<function=([^>\n]*)>(.*?)(?:</function>|(?=<function=)|\Z)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]*)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.S)


def _xml_value(tool: OfferedTool, key: str, text: str) -> object:
    text = text.removeprefix("\n").removesuffix("\n")
    if tool.kind == "custom" or key in tool.string_properties:
        return text
    ok, value = decode_json(text)
    return value if ok else text


def _only_whitespace_between(pattern: re.Pattern[str], text: str) -> list[re.Match[str]] | None:
    matches = list(pattern.finditer(text))
    pos = 0
    for m in matches:
        if text[pos : m.start()].strip():
            return None
        pos = m.end()
    return matches if not text[pos:].strip() else None


def _from_qwen_xml(text: str, tools: Mapping[str, OfferedTool]) -> Outcome:
    functions = _only_whitespace_between(_FUNCTION, text)
    if not functions:
        return _FAILED
    objects: list[object] = []
    for function in functions:
        name = function.group(1).strip()
        params = _only_whitespace_between(_PARAMETER, function.group(2))
        tool = tools.get(name)
        if params is None:
            return _FAILED
        if tool is None:
            objects.append({"name": name})
            continue
        arguments = {p.group(1).strip(): _xml_value(tool, p.group(1).strip(), p.group(2)) for p in params}
        objects.append({"name": name, "arguments": arguments})
    return _from_objects(objects, tools, "contract")


def _unfence(text: str) -> str:
    if not text.startswith("```"):
        return text
    _, _, rest = text.partition("\n")
    rest = rest.rstrip()
    if rest.endswith("```"):
        rest = rest.rstrip("`")
    return rest.strip()


def parse_contract_body(body: str, tools: Mapping[str, OfferedTool]) -> Outcome:
    """The text between ``<tool_call>`` and ``</tool_call>``; anything but calls is a failed call."""
    text = _unfence(body.strip())
    outcome = _from_qwen_xml(text, tools) if text.startswith("<function=") else _from_json(text, tools, "contract")
    if outcome.calls:
        return outcome
    return Outcome(looked_like_call=True, failed=outcome.failed or not outcome.looked_like_call)


_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.S)


def _from_contract_blocks(text: str, tools: Mapping[str, OfferedTool]) -> Outcome:
    blocks = _only_whitespace_between(_BLOCK, text)
    if not blocks:
        return _FAILED
    outcomes = [parse_contract_body(b.group(1), tools) for b in blocks]
    if all(o.calls for o in outcomes):
        return Outcome(tuple(c for o in outcomes for c in o.calls), looked_like_call=True)
    return Outcome(looked_like_call=True, failed=any(o.failed for o in outcomes))


def parse_json_body(body: str, tools: Mapping[str, OfferedTool]) -> Outcome:
    """A bare JSON line or the body of a json (or plain) fence: call objects, a list of them, or contract blocks.

    A body that ``json_body_verdict`` rules out is never counted as a call attempt, so streaming (which
    decides from the first characters) and one-shot recognition agree.
    """
    if json_body_verdict(body, 0) != "yes":
        return _NOT_A_CALL
    text = body.strip(_WS)
    if text.startswith(TOOL_CALL_OPEN):
        return _from_contract_blocks(text, tools)
    return _from_json(text, tools, "json")


def first_key_verdict(text: str, i: int) -> Verdict:
    """Whether the object opening at ``text[i]`` can still be a call, judged by its first key alone.

    This lets data JSON and ``{placeholder}`` prose stream on without waiting for the object to close.
    """
    return key_verdict(text, _skip_ws(text, i + 1))


def key_verdict(text: str, j: int) -> Verdict:
    """``first_key_verdict`` given ``j``, the first non-blank index after the opening brace."""
    if j >= len(text):
        return "more"
    if text[j] != '"':
        return "no"
    stop = _KEY_STOP.search(text, j + 1, j + 2 + _MAX_KEY)
    if stop is None:
        return "more" if len(text) < j + 2 + _MAX_KEY else "no"
    if text[stop.start()] == "\\":
        return "yes"
    return "yes" if text[j + 1 : stop.start()] in CALL_KEYS else "no"


def json_body_verdict(text: str, start: int) -> Verdict:
    """Whether a JSON body starting at ``text[start]`` can still be a call, from its first characters."""
    i = _skip_ws(text, start)
    if i >= len(text):
        return "more"
    ch = text[i]
    if ch == "[":
        i = _skip_ws(text, i + 1)
        if i >= len(text):
            return "more"
        ch = text[i]
    if ch == "{":
        return first_key_verdict(text, i)
    if ch == "<" and text.startswith(TOOL_CALL_OPEN, i):
        return "yes"
    if ch == "<" and len(text) - i < len(TOOL_CALL_OPEN) and TOOL_CALL_OPEN.startswith(text[i:]):
        return "more"
    return "no"
