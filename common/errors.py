"""The one error vocabulary shared by handlers and the sidecar.

Every failure the gateway reports is one ``Failed`` value, made where the failure is first known: a code
from ``ErrorCode``, a message and its details. The same value crosses the sidecar socket as a frame, ends a
stream as its terminal event, and is what each dialect's table renders (``handlers/errors.py``). Where a
failure has to unwind the stack, a ``GatewayError`` carries it: raising one makes its ``Failed`` once, and
``GatewayError.carrying`` raises a ``Failed`` that came from elsewhere as it is.

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

import msgspec

__all__ = (
    "ERROR_CLASSES",
    "BadRequestError",
    "ContextLengthExceededError",
    "ErrorCode",
    "Failed",
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


class Failed(msgspec.Struct, tag="failed", tag_field="t", kw_only=True, omit_defaults=True):
    """A failure as data: the sidecar protocol's terminal frame (its tag and tag field are the protocol's)."""

    code: str
    """An ``ErrorCode``; kept a plain string so that a newer sidecar's code still decodes (it renders as internal)."""
    message: str
    retry_after_s: float | None = None
    upstream_status: int | None = None
    detail_code: str | None = None
    """A finer code for the caller's envelope, such as ``previous_response_not_found``."""
    param: str | None = None


class GatewayError(Exception):
    """Base of every failure the gateway reports to a caller; ``failed`` is the failure itself."""

    code: ClassVar[ErrorCode] = "internal"
    failed: Failed

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
        self.failed = Failed(
            code=self.code,
            message=message,
            retry_after_s=retry_after_s,
            upstream_status=upstream_status,
            detail_code=detail_code,
            param=param,
        )

    @staticmethod
    def carrying(failed: Failed) -> GatewayError:
        """The error that raises ``failed`` as it is; its class is the code's (an unknown code is ``internal``)."""
        kind = ERROR_CLASSES.get(failed.code, InternalError)
        err = kind.__new__(kind)
        Exception.__init__(err, failed.message)
        err.failed = failed
        return err

    @property
    def message(self) -> str:
        return self.failed.message

    @property
    def retry_after_s(self) -> float | None:
        return self.failed.retry_after_s

    @property
    def upstream_status(self) -> int | None:
        return self.failed.upstream_status

    @property
    def param(self) -> str | None:
        return self.failed.param

    @property
    def detail_code(self) -> str | None:
        return self.failed.detail_code


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
