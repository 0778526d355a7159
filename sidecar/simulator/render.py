"""Text the simulator streams: the default reply, think markers, tool-call formats, and chunking.

Everything here is pure, so tests can recompute what the simulator must have said.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = (
    "THINK_CLOSE",
    "THINK_OPEN",
    "TOOL_CALL_FORMATS",
    "chunk_chars",
    "chunk_words",
    "default_reply",
    "history_sha1",
    "newest_text",
    "python_literal",
    "render_custom_tool_call",
    "render_think",
    "render_tool_call",
)

THINK_OPEN = "\n````think::{THINK_TIME}\n"
"""Lingma's opening think marker: four backticks and a literal ``{THINK_TIME}``."""
THINK_CLOSE = "\n````\n"
TOOL_CALL_FORMATS = frozenset({"contract", "tool_code", "tool_code_positional", "json", "json_fenced"})
_WORD = re.compile(r"\s*\S+\s*")


def newest_text(question: str) -> str:
    """The last non-empty line of a questionText, stripped (the newest turn is rendered last)."""
    for line in reversed(question.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def history_sha1(questions: list[str]) -> str:
    """sha1 hex of the canonical UTF-8 JSON of the session's questionTexts, oldest first."""
    encoded = json.dumps(questions, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(encoded.encode()).hexdigest()


def default_reply(session_id: str, questions: list[str]) -> str:
    """The answer when no scenario entry applies; it reports what the simulator holds for the session.

    Exactly ``sim: turn <k> of session <sid[:8]>; history sha1 <h[:12]>; you said: <newest[:60]>`` where
    ``questions`` is every questionText the session received, oldest first, including the current one;
    ``k = len(questions)``; ``h = history_sha1(questions)``, the sha1 of
    ``json.dumps(questions, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")``;
    and ``newest = newest_text(questions[-1])``, the last non-empty line of the current questionText, stripped.
    """
    return (
        f"sim: turn {len(questions)} of session {session_id[:8]}; "
        f"history sha1 {history_sha1(questions)[:12]}; "
        f"you said: {newest_text(questions[-1] if questions else '')[:60]}"
    )


def render_think(text: str) -> str:
    return f"{THINK_OPEN}{text}{THINK_CLOSE}"


def python_literal(value: Any) -> str:
    """A JSON-compatible value written as a Python literal: True/False/None, double-quoted JSON strings."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _tool_code(name: str, arguments: Any, positional: bool) -> str:
    if isinstance(arguments, dict):
        if positional:
            inner = python_literal(next(iter(arguments.values()))) if arguments else ""
        else:
            inner = ", ".join(f"{key}={python_literal(value)}" for key, value in arguments.items())
    else:
        inner = python_literal(arguments)
    return f"```tool_code\n{name}({inner})\n```"


def render_tool_call(name: str, arguments: Any, fmt: str = "contract") -> str:
    """A function call in one of the formats the gateway recognises.

    - ``contract``: ``<tool_call>\\n{"name": N, "arguments": A}\\n</tool_call>`` (json.dumps, ensure_ascii=False)
    - ``tool_code``: a ```` ```tool_code ```` fence holding ``N(k1=v1, k2=v2)`` with Python-style literals
    - ``tool_code_positional``: the same fence holding ``N(v)``, the value of the only argument
    - ``json``: bare ``{"name": N, "arguments": A}``; ``json_fenced``: that inside a ```` ```json ```` fence
    """
    if fmt in ("tool_code", "tool_code_positional"):
        return _tool_code(name, arguments, fmt == "tool_code_positional")
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return _wrap_json(body, fmt)


def render_custom_tool_call(name: str, tool_input: Any, fmt: str = "contract") -> str:
    """A free-form (custom) tool call: ``input`` instead of ``arguments``; tool_code puts it positionally."""
    if fmt in ("tool_code", "tool_code_positional"):
        return f"```tool_code\n{name}({python_literal(tool_input)})\n```"
    body = json.dumps({"name": name, "input": tool_input}, ensure_ascii=False)
    return _wrap_json(body, fmt)


def _wrap_json(body: str, fmt: str) -> str:
    if fmt == "json":
        return body
    if fmt == "json_fenced":
        return f"```json\n{body}\n```"
    return f"<tool_call>\n{body}\n</tool_call>"


def chunk_words(text: str, words: int = 3) -> list[str]:
    """A few words per chunk, whitespace kept, so the chunks concatenate back to ``text``."""
    pieces = _WORD.findall(text)
    if not pieces:
        return [text] if text else []
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)]


def chunk_chars(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]
