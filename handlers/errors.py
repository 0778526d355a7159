"""The error table (docs/dialects.md §1.5): one ``GatewayError`` code, each dialect's envelope and status."""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from common.errors import BadRequestError, GatewayError, InternalError, NotFoundError, TooLargeError
from common.log import REQUEST_ID

__all__ = (
    "ClientGoneError",
    "anthropic_error_body",
    "anthropic_exception_handlers",
    "anthropic_status",
    "openai_error_body",
    "openai_exception_handlers",
    "openai_status",
    "responses_error_code",
    "to_gateway_error",
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


def openai_status(exc: GatewayError) -> int:
    return _OPENAI.get(exc.code, _OPENAI["internal"])[0]


def anthropic_status(exc: GatewayError) -> int:
    return _ANTHROPIC.get(exc.code, _ANTHROPIC["internal"])[0]


def responses_error_code(exc: GatewayError) -> str:
    return _RESPONSES.get(exc.code, "server_error")


def openai_error_body(exc: GatewayError) -> dict[str, object]:
    _status, kind, code = _OPENAI.get(exc.code, _OPENAI["internal"])
    return {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.detail_code or code}}


def anthropic_error_body(exc: GatewayError, request_id: str | None = None) -> dict[str, object]:
    _status, kind = _ANTHROPIC.get(exc.code, _ANTHROPIC["internal"])
    return {"type": "error", "error": {"type": kind, "message": exc.message}, "request_id": request_id}


def _retry_headers(exc: GatewayError) -> dict[str, str]:
    if exc.retry_after_s is None:
        return {}
    return {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}


def to_gateway_error(exc: Exception) -> GatewayError:
    """Map framework and decoding errors onto the vocabulary; anything unknown is ``internal``."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, RecursionError):
        return BadRequestError("the request nests JSON too deeply")
    if isinstance(exc, (msgspec.DecodeError, msgspec.ValidationError)):
        return BadRequestError(f"invalid request body: {exc}")
    if isinstance(exc, HTTPException):
        if exc.status_code == 413:
            return TooLargeError("the request body is too large")
        if exc.status_code == 404:
            return NotFoundError(f"no such route: {exc.detail}")
        if exc.status_code < 500:
            err = BadRequestError(str(exc.detail))
            err.upstream_status = exc.status_code
            return err
    log.exception("unhandled error in a handler", exc_info=exc)
    return InternalError("the gateway failed to handle the request")


def _status_override(err: GatewayError, default: int) -> int:
    # Framework 4xx such as 405 keep their status while using the bad_request envelope.
    if err.code == "bad_request" and err.upstream_status and 400 <= err.upstream_status < 500:
        return err.upstream_status
    return default


def note_refusal(status: int, err: GatewayError) -> None:
    """A line for each answer an operator acts on: backpressure, a lost sidecar, timeouts, failures."""
    if status == 429 or status >= 500:
        level = logging.ERROR if err.code in ("internal", "protocol") else logging.WARNING
        log.log(level, "answered %s (%s): %s", status, err.code, err.message)


def _openai_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    err = to_gateway_error(exc)
    status = _status_override(err, openai_status(err))
    note_refusal(status, err)
    return Response(
        content=openai_error_body(err),
        status_code=status,
        headers=_retry_headers(err),
        media_type="application/json",
    )


def _anthropic_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    err = to_gateway_error(exc)
    request_id = REQUEST_ID.get()
    status = _status_override(err, anthropic_status(err))
    note_refusal(status, err)
    return Response(
        content=anthropic_error_body(err, request_id),
        status_code=status,
        headers=_retry_headers(err),
        media_type="application/json",
    )


openai_exception_handlers: ExceptionHandlersMap = {Exception: _openai_handler}
anthropic_exception_handlers: ExceptionHandlersMap = {Exception: _anthropic_handler}
