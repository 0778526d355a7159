"""The one error vocabulary shared by handlers and the sidecar.

Every failure the gateway reports has a code from ``ErrorCode``; the code decides the HTTP status and
body in each dialect (see ``handlers/errors.py``) and crosses the sidecar socket as a ``Failed`` frame.

    GatewayError
    ├── BadRequestError              bad_request
    │   └── PreviousResponseNotFoundError
    ├── TooLargeError                too_large
    ├── UnauthorizedError            unauthorized
    ├── NotFoundError                not_found
    ├── RateLimitedError             rate_limited
    ├── QuotaExhaustedError          quota_exhausted
    ├── NoCapacityError              no_capacity
    ├── ContextLengthExceededError   context_length_exceeded
    ├── UpstreamError                upstream_error
    ├── UpstreamUnavailableError     upstream_unavailable
    ├── UpstreamTimeoutError         upstream_timeout
    ├── SidecarUnavailableError      sidecar_unavailable
    ├── ProtocolVersionError         protocol
    └── InternalError                internal
"""

from __future__ import annotations

from typing import ClassVar, Literal

__all__ = (
    "ERROR_CLASSES",
    "BadRequestError",
    "ContextLengthExceededError",
    "ErrorCode",
    "GatewayError",
    "InternalError",
    "NoCapacityError",
    "NotFoundError",
    "PreviousResponseNotFoundError",
    "ProtocolVersionError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "SidecarUnavailableError",
    "TooLargeError",
    "UnauthorizedError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "error_for_code",
)

ErrorCode = Literal[
    "bad_request",
    "too_large",
    "unauthorized",
    "not_found",
    "rate_limited",
    "quota_exhausted",
    "no_capacity",
    "context_length_exceeded",
    "upstream_error",
    "upstream_unavailable",
    "upstream_timeout",
    "sidecar_unavailable",
    "protocol",
    "internal",
]


class GatewayError(Exception):
    """Base of every failure the gateway reports to a caller."""

    code: ClassVar[ErrorCode] = "internal"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        upstream_status: int | None = None,
        param: str | None = None,
        detail_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.upstream_status = upstream_status
        self.param = param
        self.detail_code = detail_code
        """A finer code for the caller's envelope, such as ``previous_response_not_found``."""


class BadRequestError(GatewayError):
    code = "bad_request"


class PreviousResponseNotFoundError(BadRequestError):
    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            detail_code="previous_response_not_found",
        )


class TooLargeError(GatewayError):
    code = "too_large"


class UnauthorizedError(GatewayError):
    code = "unauthorized"


class NotFoundError(GatewayError):
    code = "not_found"


class RateLimitedError(GatewayError):
    code = "rate_limited"


class QuotaExhaustedError(GatewayError):
    code = "quota_exhausted"


class NoCapacityError(GatewayError):
    code = "no_capacity"


class ContextLengthExceededError(GatewayError):
    code = "context_length_exceeded"


class UpstreamError(GatewayError):
    code = "upstream_error"


class UpstreamUnavailableError(GatewayError):
    code = "upstream_unavailable"


class UpstreamTimeoutError(GatewayError):
    code = "upstream_timeout"


class SidecarUnavailableError(GatewayError):
    code = "sidecar_unavailable"


class ProtocolVersionError(GatewayError):
    code = "protocol"


class InternalError(GatewayError):
    code = "internal"


ERROR_CLASSES: dict[str, type[GatewayError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        TooLargeError,
        UnauthorizedError,
        NotFoundError,
        RateLimitedError,
        QuotaExhaustedError,
        NoCapacityError,
        ContextLengthExceededError,
        UpstreamError,
        UpstreamUnavailableError,
        UpstreamTimeoutError,
        SidecarUnavailableError,
        ProtocolVersionError,
        InternalError,
    )
}


def error_for_code(
    code: str,
    message: str,
    *,
    retry_after_s: float | None = None,
    upstream_status: int | None = None,
    detail_code: str | None = None,
    param: str | None = None,
) -> GatewayError:
    """Rebuild an error from its code; an unknown code (a newer sidecar) becomes ``internal``."""
    cls = ERROR_CLASSES.get(code, InternalError)
    return cls(
        message, retry_after_s=retry_after_s, upstream_status=upstream_status, detail_code=detail_code, param=param
    )
