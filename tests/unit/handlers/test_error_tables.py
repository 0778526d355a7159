"""The dialect tables render a ``Failed`` as it was made; an exception only carries one."""

from __future__ import annotations

import pytest
from litestar.exceptions import HTTPException

from common.errors import (
    ERROR_CLASSES,
    BadRequestError,
    Failed,
    GatewayError,
    InternalError,
    PreviousResponseNotFoundError,
    RateLimitedError,
)
from handlers.errors import (
    anthropic_error_body,
    anthropic_status,
    failure_of,
    openai_error_body,
    openai_status,
    responses_error,
)


def test_raising_a_frame_carries_that_very_frame() -> None:
    frame = Failed(code="rate_limited", message="busy", retry_after_s=4.0, upstream_status=429, param="p")
    err = GatewayError.carrying(frame)
    assert isinstance(err, RateLimitedError)
    assert err.failed is frame
    assert failure_of(err) is frame
    assert (err.message, err.retry_after_s, err.upstream_status, err.param) == ("busy", 4.0, 429, "p")
    assert str(err) == "busy"


@pytest.mark.parametrize("code", sorted(ERROR_CLASSES))
def test_every_code_round_trips_to_its_class(code: str) -> None:
    err = GatewayError.carrying(Failed(code=code, message="m"))
    assert type(err) is ERROR_CLASSES[code]
    assert type(err).code == code


def test_an_error_raised_in_a_handler_makes_its_frame_once() -> None:
    err = PreviousResponseNotFoundError("resp_1")
    assert err.failed == Failed(
        code="bad_request",
        message="Previous response with id 'resp_1' not found.",
        param="previous_response_id",
        detail_code="previous_response_not_found",
    )
    assert failure_of(err) is err.failed
    body = openai_error_body(err.failed)
    assert body == {
        "error": {
            "message": "Previous response with id 'resp_1' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }


def test_a_code_from_a_newer_sidecar_renders_as_internal() -> None:
    frame = Failed(code="brand_new", message="something new")
    assert isinstance(GatewayError.carrying(frame), InternalError)
    assert GatewayError.carrying(frame).failed.code == "brand_new"  # kept as it came
    assert openai_status(frame) == 500
    assert anthropic_status(frame) == 500
    assert responses_error(frame) == ("server_error", "something new")
    assert anthropic_error_body(frame, "req_1") == {
        "type": "error",
        "error": {"type": "api_error", "message": "something new"},
        "request_id": "req_1",
    }


def test_framework_errors_get_their_frame_where_they_are_seen() -> None:
    assert failure_of(RecursionError()) == BadRequestError("the request nests JSON too deeply").failed
    refused = failure_of(HTTPException(status_code=405, detail="Method Not Allowed"))
    assert (refused.code, refused.upstream_status) == ("bad_request", 405)
    assert failure_of(ValueError("secret")).code == "internal"
