"""classify_finish: one table from Lingma's failure payloads to the gateway's errors."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import (
    GatewayError,
    NoCapacityError,
    QuotaExhaustedError,
    RateLimitedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from sidecar.lingma.errors import StaleSessionError, classify_finish, finish_status


@pytest.mark.parametrize(
    ("params", "expected", "status", "retry"),
    [
        ({"statusCode": 404, "errorCode": "SESSION_NOT_FOUND"}, StaleSessionError, 404, None),
        ({"statusCode": 500, "errorCode": "SESSION_NOT_FOUND"}, StaleSessionError, 500, None),
        ({"statusCode": 404, "reason": "error"}, StaleSessionError, 404, None),
        (
            {"statusCode": 429, "errorCode": "QUOTA_EXCEEDED", "errorMessage": "quota used up"},
            QuotaExhaustedError,
            429,
            None,
        ),
        ({"statusCode": 403, "errorMessage": "Monthly Quota exhausted"}, QuotaExhaustedError, 403, None),
        ({"statusCode": 429, "errorCode": "RATE_LIMIT"}, RateLimitedError, 429, 30.0),
        ({"statusCode": 429, "retryAfter": 7}, RateLimitedError, 429, 7.0),
        ({"statusCode": 500, "errorCode": "RATE_LIMIT", "extra": {"retryAfter": "12"}}, RateLimitedError, 500, 12.0),
        ({"statusCode": 408, "reason": "timeout"}, UpstreamTimeoutError, 408, None),
        ({"statusCode": 500, "errorCode": "SERVER_ERROR", "errorMessage": "boom"}, UpstreamError, 500, None),
        ({"statusCode": "502"}, UpstreamError, 502, None),
        ({"reason": "error"}, UpstreamError, None, None),
        ({"statusCode": 401}, NoCapacityError, None, None),
        ({"success": False, "errorCode": "NOT_LOGIN", "errorMessage": "user not login"}, NoCapacityError, None, None),
        (
            {"success": False, "errorCode": "MODEL_NOT_FOUND", "errorMessage": "model not found: x"},
            UpstreamError,
            None,
            None,
        ),
    ],
)
def test_classification_table(
    params: dict[str, Any], expected: type[GatewayError], status: int | None, retry: float | None
) -> None:
    error = classify_finish(params, instance_id="inst-7")
    assert type(error) is expected
    assert error.upstream_status == status
    assert error.retry_after_s == retry


def test_stale_session_is_an_upstream_error() -> None:
    assert issubclass(StaleSessionError, UpstreamError)
    assert StaleSessionError.code == "upstream_error"


def test_messages_carry_the_payload_and_the_instance() -> None:
    error = classify_finish({"statusCode": 500, "errorCode": "SERVER_ERROR", "errorMessage": "boom"})
    assert "SERVER_ERROR" in error.message and "boom" in error.message and "500" in error.message
    logged_out = classify_finish({"errorCode": "NOT_LOGIN"}, instance_id="acct-3")
    assert "acct-3" in logged_out.message and "login" in logged_out.message


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"statusCode": 200, "reason": "success"}, 200),
        ({"reason": "success"}, 200),
        ({"reason": "cancelled"}, 200),
        ({}, 200),
        ({"reason": "error"}, 500),
        ({"statusCode": "408"}, 408),
        ({"statusCode": True, "reason": "error"}, 500),
    ],
)
def test_finish_status(params: dict[str, Any], status: int) -> None:
    assert finish_status(params) == status
