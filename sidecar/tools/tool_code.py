"""Calls written Gemini/Gemma-style: a ```` ```tool_code ```` fence holding ``name(key=value, ...)`` lines.

Only literals are accepted as values (``ast.literal_eval``, plus JSON's ``true``/``false``/``null``), so no
model output is ever evaluated as code.
"""

from __future__ import annotations

import ast
import textwrap
import warnings
from collections.abc import Mapping

from .calls import OfferedTool, RecognisedCall, arguments_for
from .json_calls import Outcome

__all__ = ("parse_tool_code",)

_JSON_NAMES: dict[str, bool | None] = {"true": True, "false": False, "null": None}
_BAD = object()
_FAILED = Outcome(looked_like_call=True, failed=True)


class _JsonNames(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _JSON_NAMES:
            return ast.copy_location(ast.Constant(_JSON_NAMES[node.id]), node)
        return node


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(_JsonNames().visit(node))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _BAD


def _parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(source, mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return None


def _call_of(stmt: ast.stmt) -> ast.Call | None:
    """The call a statement makes, looking through ``print(...)``, which Gemini-style output wraps calls in."""
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        return None
    call = stmt.value
    func = call.func
    if (
        isinstance(func, ast.Name)
        and func.id == "print"
        and len(call.args) == 1
        and not call.keywords
        and isinstance(call.args[0], ast.Call)
    ):
        return call.args[0]
    return call


def _name_of(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.attr
    return None


def _arguments(call: ast.Call, tool: OfferedTool) -> str | None:
    if any(isinstance(a, ast.Starred) for a in call.args):
        return None
    if call.args:
        if len(call.args) != 1 or call.keywords:
            return None
        value = _literal(call.args[0])
        if tool.kind == "custom":
            return value if isinstance(value, str) else None
        if value is _BAD or len(tool.properties) != 1:
            return None
        return arguments_for(tool, {tool.properties[0]: value})
    values: dict[str, object] = {}
    for keyword in call.keywords:
        value = _literal(keyword.value)
        if keyword.arg is None or value is _BAD:
            return None
        values[keyword.arg] = value
    return arguments_for(tool, values)


def parse_tool_code(body: str, tools: Mapping[str, OfferedTool]) -> Outcome:
    """All lines must be calls of offered tools with readable arguments, or the whole fence stays text."""
    module = _parse(textwrap.dedent(body).strip())
    if module is None or not module.body:
        return _FAILED
    calls: list[RecognisedCall] = []
    failed = rejected = False
    for stmt in module.body:
        call = _call_of(stmt)
        if call is None:
            return _FAILED
        name = _name_of(call.func)
        tool = tools.get(name) if name is not None else None
        arguments = _arguments(call, tool) if tool is not None else None
        if tool is None or arguments is None:
            failed = failed or tool is not None
            rejected = True
            continue
        calls.append(RecognisedCall(tool.name, arguments, tool.kind, "tool_code"))
    if rejected:
        return Outcome(looked_like_call=True, failed=failed)
    return Outcome(tuple(calls), looked_like_call=True)
