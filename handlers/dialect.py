"""Routes shared by both API families answer errors in the caller's own dialect."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import State
from litestar.types import ExceptionHandlersMap

from handlers.errors import anthropic_exception_handlers, openai_exception_handlers

__all__ = ("any_dialect_exception_handlers", "is_anthropic")


def is_anthropic(request: Request[object, object, State]) -> bool:
    headers = request.headers
    return "anthropic-version" in headers or ("x-api-key" in headers and "authorization" not in headers)


def _handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    table = anthropic_exception_handlers if is_anthropic(request) else openai_exception_handlers
    return table[Exception](request, exc)


any_dialect_exception_handlers: ExceptionHandlersMap = {Exception: _handler}
