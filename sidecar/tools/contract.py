"""The tool contract: how offered tools, earlier calls and their results are written into Lingma's prompt.

Lingma has no field for caller-defined tools, so the prompt describes them and asks for one calling format:
the Hermes/Qwen ``<tool_call>`` block that Qwen models were trained on. Everything here is deterministic,
because the rendered text feeds the session cache key and the token counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from common.conversation import ImagePart, Message, TextPart, ToolCallRecord, ToolChoice, ToolSpec

from .calls import decode_json

__all__ = (
    "CALL_FORMAT_DOC",
    "DESCRIPTION_LIMIT",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "render_contract",
    "render_tool_call",
    "render_tool_calls",
    "render_tool_result",
)

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
DESCRIPTION_LIMIT = 1200
"""Characters of a tool description kept in the contract; longer ones are cut at a paragraph or sentence."""

CALL_FORMAT_DOC = """\
A tool call is a `<tool_call>` block holding one JSON object, on lines of its own:

    <tool_call>
    {"name": "Bash", "arguments": {"command": "ls -la"}}
    </tool_call>

A custom (free-form) tool takes its raw text input as a JSON string under `input` instead of `arguments`:

    <tool_call>
    {"name": "apply_patch", "input": "*** Begin Patch\\n..."}
    </tool_call>

Several calls are several blocks, one after another. A tool result is sent back as
`<tool_response name="Bash" id="call_1">...</tool_response>` (with `error="true"` when the tool failed).
"""

_FUNCTION_FORMAT = (
    "For each tool call, return a JSON object with the tool name and its arguments "
    "within <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <tool-name>, "arguments": <args-json-object>}\n</tool_call>'
)
_CUSTOM_FORMAT = (
    'A tool listed with "input" takes raw text instead of arguments; give the text as a JSON string:\n'
    '<tool_call>\n{"name": <tool-name>, "input": <raw-text-as-json-string>}\n</tool_call>'
)
_RULES = (
    "To make several calls, write several <tool_call> blocks, one after another. "
    "After your last call, stop writing and wait: each result comes back in a <tool_response> block."
)
_AUTO = "If no tool is needed, answer normally, without any <tool_call> block."
_REQUIRED = "You MUST call at least one tool now: reply with one or more <tool_call> blocks, not with a plain answer."
_NAMED = 'You MUST call the tool "{name}" now, and no other tool: reply with <tool_call> blocks calling "{name}".'

_DROPPED_KEYWORDS = frozenset({"$schema", "$id", "title", "$comment"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "not", "additionalProperties", "contains", "if", "then", "else"})


def _compact_schema(schema: object) -> object:
    """Drop keywords that cost tokens and tell the model nothing (``$schema``, titles, closed objects)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, object] = {}
    for key, value in schema.items():
        if key in _DROPPED_KEYWORDS or (key == "additionalProperties" and value is False):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _compact_schema(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_compact_schema(v) for v in value]
        elif key in _SCHEMA_ONE:
            out[key] = _compact_schema(value)
        else:
            out[key] = value
    return out


_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _trim_description(text: str, limit: int) -> str:
    """Tidy whitespace and cut a long description at the last paragraph or sentence end before ``limit``."""
    text = _BLANK_RUNS.sub("\n\n", _TRAILING_SPACE.sub("\n", text.strip()))
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = head.rfind("\n\n")
    if cut < limit // 2:
        cut = max(head.rfind(". "), head.rfind(".\n")) + 1
    if cut < limit // 2:
        cut = head.rfind(" ")
    if cut <= 0:
        cut = limit
    return head[:cut].rstrip() + " …"


def _tool_line(spec: ToolSpec, limit: int) -> str:
    entry: dict[str, object] = {"name": spec.name}
    description = _trim_description(spec.description, limit)
    if description:
        entry["description"] = description
    if spec.kind == "custom":
        entry["input"] = "raw text"
    else:
        ok, schema = decode_json(spec.parameters)
        entry["parameters"] = _compact_schema(schema) if ok else spec.parameters
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def _choice_rule(tools: Sequence[ToolSpec], choice: ToolChoice) -> str:
    if choice.mode == "named" and choice.name is not None and any(t.name == choice.name for t in tools):
        return _NAMED.format(name=choice.name)
    if choice.mode in ("required", "named"):
        return _REQUIRED
    return _AUTO


def render_contract(
    tools: Sequence[ToolSpec], choice: ToolChoice, *, description_limit: int = DESCRIPTION_LIMIT
) -> str:
    """The tools section of the prompt, or "" when no tool may be called.

    A ``named`` choice whose tool is not offered is rendered as ``required``.
    """
    if choice.mode == "none" or not tools:
        return ""
    lines = [_tool_line(t, description_limit) for t in tools]
    parts = [
        "# Tools\n\nYou may call one or more of these tools to help with the request:\n<tools>\n"
        + "\n".join(lines)
        + "\n</tools>"
    ]
    if any(t.kind == "function" for t in tools):
        parts.append(_FUNCTION_FORMAT)
    if any(t.kind == "custom" for t in tools):
        parts.append(_CUSTOM_FORMAT)
    parts.append(_RULES + " " + _choice_rule(tools, choice))
    return "\n\n".join(parts)


def render_tool_call(call: ToolCallRecord) -> str:
    """An earlier call written exactly as the contract asks the model to write one."""
    body: dict[str, object] = {"name": call.name}
    if call.kind == "custom":
        body["input"] = call.arguments
    else:
        ok, arguments = decode_json(call.arguments)
        body["arguments"] = arguments if ok else call.arguments
    return f"{TOOL_CALL_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}"


def render_tool_calls(calls: Sequence[ToolCallRecord]) -> str:
    return "\n".join(render_tool_call(c) for c in calls)


def _attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _result_text(msg: Message) -> str:
    pieces: list[str] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ImagePart):
            pieces.append("[image]")
    return "".join(pieces)


def render_tool_result(msg: Message) -> str:
    """A tool result as a ``<tool_response>`` block, the form Qwen's chat template gives results."""
    attrs = ""
    if msg.name:
        attrs += f' name="{_attribute(msg.name)}"'
    if msg.tool_call_id:
        attrs += f' id="{_attribute(msg.tool_call_id)}"'
    if msg.is_error:
        attrs += ' error="true"'
    text = _result_text(msg)
    middle = f"\n{text}\n" if text else "\n"
    return f"<tool_response{attrs}>{middle}</tool_response>"
