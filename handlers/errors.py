"""The error table (docs/dialects.md §1.5): a ``Failed``, rendered in each dialect's envelope and status.

A ``Failed`` reaches these tables as it was made (in the sidecar, in the client on a broken connection, or
in a handler that raised a ``GatewayError``); nothing here rebuilds it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from common.errors import BadRequestError, Failed, GatewayError, InternalError, NotFoundError, TooLargeError
from common.log import REQUEST_ID

__all__ = (
    "ClientGoneError",
    "anthropic_error_body",
    "anthropic_exception_handlers",
    "anthropic_status",
    "failure_of",
    "openai_error_body",
    "openai_exception_handlers",
    "openai_status",
    "responses_error",
)

log = logging.getLogger("lingma_gateway.handlers")

CLIENT_GONE_STATUS = 499
"""What the access log and metrics say for a caller that hung up (nginx's convention); nobody receives it."""


class ClientGoneError(GatewayError):
    """The caller hung up (mid-body, or before the answer was ready): not a failure of the gateway."""

    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message, upstream_status=CLIENT_GONE_STATUS)


# code: (status, type, code)
_OPENAI: dict[str, tuple[int, str, str | None]] = {
    "bad_request": (400, "invalid_request_error", None),
    "too_large": (413, "invalid_request_error", "request_too_large"),
    "unauthorized": (401, "invalid_request_error", "invalid_api_key"),
    "not_found": (404, "invalid_request_error", "not_found"),
    "rate_limited": (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    "quota_exhausted": (429, "insufficient_quota", "insufficient_quota"),
    "no_capacity": (503, "service_unavailable", "service_unavailable"),
    "context_length_exceeded": (400, "invalid_request_error", "context_length_exceeded"),
    "upstream_error": (502, "server_error", "upstream_error"),
    "upstream_unavailable": (502, "server_error", "upstream_unavailable"),
    "upstream_timeout": (504, "server_error", "upstream_timeout"),
    "sidecar_unavailable": (503, "service_unavailable", "sidecar_unavailable"),
    "protocol": (503, "service_unavailable", "sidecar_protocol_mismatch"),
    "internal": (500, "server_error", "internal_error"),
}

_ANTHROPIC: dict[str, tuple[int, str]] = {
    "bad_request": (400, "invalid_request_error"),
    "too_large": (413, "request_too_large"),
    "unauthorized": (401, "authentication_error"),
    "not_found": (404, "not_found_error"),
    "rate_limited": (429, "rate_limit_error"),
    "quota_exhausted": (429, "rate_limit_error"),
    "no_capacity": (529, "overloaded_error"),
    "context_length_exceeded": (400, "invalid_request_error"),
    "upstream_error": (500, "api_error"),
    "upstream_unavailable": (500, "api_error"),
    "upstream_timeout": (504, "timeout_error"),
    "sidecar_unavailable": (529, "overloaded_error"),
    "protocol": (529, "overloaded_error"),
    "internal": (500, "api_error"),
}

_RESPONSES: dict[str, str] = {
    "rate_limited": "rate_limit_exceeded",
    "quota_exhausted": "insufficient_quota",
    "no_capacity": "server_is_overloaded",
    "sidecar_unavailable": "server_is_overloaded",
    "context_length_exceeded": "context_length_exceeded",
}


def openai_status(failed: Failed) -> int:
    return _OPENAI.get(failed.code, _OPENAI["internal"])[0]


def anthropic_status(failed: Failed) -> int:
    return _ANTHROPIC.get(failed.code, _ANTHROPIC["internal"])[0]


def responses_error(failed: Failed) -> tuple[str, str]:
    """The code and message of a Responses in-stream ``error``; a back-off is spelled out in the message,
    since Codex reads it from the phrase "try again in" (docs/dialects.md §3.5)."""
    code, message, retry = _RESPONSES.get(failed.code, "server_error"), failed.message, failed.retry_after_s
    if code == "rate_limit_exceeded" and retry is not None and "try again in" not in message.lower():
        message = f"{message.rstrip('.')}. Please try again in {max(1, math.ceil(retry))}s."
    return code, message


def openai_error_body(failed: Failed) -> dict[str, object]:
    _status, kind, code = _OPENAI.get(failed.code, _OPENAI["internal"])
    return {
        "error": {"message": failed.message, "type": kind, "param": failed.param, "code": failed.detail_code or code}
    }


def anthropic_error_body(failed: Failed, request_id: str | None = None) -> dict[str, object]:
    _status, kind = _ANTHROPIC.get(failed.code, _ANTHROPIC["internal"])
    return {"type": "error", "error": {"type": kind, "message": failed.message}, "request_id": request_id}


def _retry_headers(failed: Failed) -> dict[str, str]:
    if failed.retry_after_s is None:
        return {}
    return {"retry-after": str(max(1, math.ceil(failed.retry_after_s)))}


def failure_of(exc: Exception) -> Failed:
    """The failure an exception carries; framework and decoding errors are named here, anything unknown is
    ``internal``."""
    if isinstance(exc, GatewayError):
        return exc.failed
    if isinstance(exc, RecursionError):
        return BadRequestError("the request nests JSON too deeply").failed
    if isinstance(exc, (msgspec.DecodeError, msgspec.ValidationError)):
        return BadRequestError(f"invalid request body: {exc}").failed
    if isinstance(exc, HTTPException):
        if exc.status_code == 413:
            return TooLargeError("the request body is too large").failed
        if exc.status_code == 404:
            return NotFoundError(f"no such route: {exc.detail}").failed
        if exc.status_code < 500:
            return BadRequestError(str(exc.detail), upstream_status=exc.status_code).failed
    log.exception("unhandled error in a handler", exc_info=exc)
    return InternalError("the gateway failed to handle the request").failed


def _status_override(failed: Failed, default: int) -> int:
    # Framework 4xx such as 405 keep their status while using the bad_request envelope.
    status = failed.upstream_status
    if failed.code == "bad_request" and status and 400 <= status < 500:
        return status
    return default


def note_refusal(status: int, failed: Failed) -> None:
    """A line for each answer an operator acts on: backpressure, a lost sidecar, timeouts, failures."""
    if status == 429 or status >= 500:
        level = logging.ERROR if failed.code in ("internal", "protocol") else logging.WARNING
        log.log(level, "answered %s (%s): %s", status, failed.code, failed.message)


def _openai_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    failed = failure_of(exc)
    status = _status_override(failed, openai_status(failed))
    note_refusal(status, failed)
    return Response(
        content=openai_error_body(failed),
        status_code=status,
        headers=_retry_headers(failed),
        media_type="application/json",
    )


def _anthropic_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    failed = failure_of(exc)
    status = _status_override(failed, anthropic_status(failed))
    note_refusal(status, failed)
    return Response(
        content=anthropic_error_body(failed, REQUEST_ID.get()),
        status_code=status,
        headers=_retry_headers(failed),
        media_type="application/json",
    )


openai_exception_handlers: ExceptionHandlersMap = {Exception: _openai_handler}
anthropic_exception_handlers: ExceptionHandlersMap = {Exception: _anthropic_handler}
