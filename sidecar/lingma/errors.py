"""The one place that turns Lingma's failure payloads into the gateway's error vocabulary.

How the real binary reports quota, rate limits, a forgotten session or a logged-out account is not
documented (docs/lingma-protocol.md §8, §9), so every guess about it lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import (
    GatewayError,
    NoCapacityError,
    QuotaExhaustedError,
    RateLimitedError,
    UpstreamError,
    UpstreamTimeoutError,
)

__all__ = (
    "DEFAULT_RETRY_AFTER_S",
    "AskUnansweredError",
    "StaleSessionError",
    "classify_finish",
    "finish_status",
    "is_login_failure",
    "logged_out_error",
)

DEFAULT_RETRY_AFTER_S = 30.0

_MESSAGE_KEYS = ("errorMessage", "errorMsg", "message", "error")
_RETRY_KEYS = ("retryAfter", "retry_after", "retryAfterSeconds", "retry_after_s")
_LOGIN_CODES = ("NOT_LOGIN", "LOGIN_EXPIRED", "UNAUTHORIZED", "NOT_LOGGED_IN")


class StaleSessionError(UpstreamError):
    """Lingma rejected or forgot the session id it was given; the caller may retry in a fresh session."""


class AskUnansweredError(UpstreamTimeoutError):
    """``chat/ask`` went out but was not answered in time: Lingma may have added it to the session anyway."""


def classify_finish(params: Mapping[str, Any], *, instance_id: str | None = None) -> GatewayError:
    """Map a failing ``chat/finish`` (or a ``success: false`` ``chat/ask`` result) to one error."""
    status = _status_code(params)
    code = _text(params, ("errorCode", "code")).upper()
    message = _text(params, _MESSAGE_KEYS) or _reason_text(params)
    summary = _summary(status, code, message)
    if code == "SESSION_NOT_FOUND" or status == 404 or "session not found" in message.lower():
        return StaleSessionError(f"Lingma does not know this session ({summary})", upstream_status=status)
    if is_login_failure(code, message) or status == 401:
        return logged_out_error(instance_id)
    if "QUOTA" in code or "quota" in message.lower():
        return QuotaExhaustedError(
            f"Lingma quota exhausted ({summary})", retry_after_s=_retry_after(params), upstream_status=status
        )
    if status == 429 or "RATE_LIMIT" in code or "rate limit" in message.lower():
        retry = _retry_after(params) or DEFAULT_RETRY_AFTER_S
        return RateLimitedError(f"Lingma is rate limited ({summary})", retry_after_s=retry, upstream_status=status)
    if status == 408:
        return UpstreamTimeoutError(f"Lingma timed out ({summary})", upstream_status=status)
    return UpstreamError(f"Lingma failed ({summary})", upstream_status=status)


def finish_status(params: Mapping[str, Any]) -> int:
    """The turn's status: ``statusCode`` when given, else 200 unless ``reason`` says it failed."""
    status = _status_code(params)
    if status is not None:
        return status
    reason = str(params.get("reason") or "").lower()
    return 500 if reason in {"error", "failed", "failure"} else 200


def is_login_failure(code: str, message: str) -> bool:
    code = code.upper()
    lowered = message.lower()
    return any(c in code for c in _LOGIN_CODES) or "not login" in lowered or "not logged in" in lowered


def logged_out_error(instance_id: str | None) -> NoCapacityError:
    who = f"Lingma instance {instance_id}" if instance_id else "this Lingma instance"
    return NoCapacityError(f"{who} is logged out and needs a login")


def _status_code(params: Mapping[str, Any]) -> int | None:
    raw = params.get("statusCode")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _text(params: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    sources: list[Mapping[str, Any]] = [params]
    extra = params.get("extra")
    if isinstance(extra, Mapping):
        sources.append(extra)
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return ""


def _reason_text(params: Mapping[str, Any]) -> str:
    reason = str(params.get("reason") or "")
    if reason.lower() in {"", "error", "failed", "failure", "success"}:
        return _text(params, ("fullAnswer",))[:300]
    return reason


def _retry_after(params: Mapping[str, Any]) -> float | None:
    extra = params.get("extra")
    for source in (params, extra if isinstance(extra, Mapping) else {}):
        for key in _RETRY_KEYS:
            value = source.get(key)
            if isinstance(value, bool):
                continue
            try:
                seconds = float(value) if isinstance(value, int | float | str) else None
            except ValueError:
                seconds = None
            if seconds is not None and seconds >= 0:
                return seconds
    return None


def _summary(status: int | None, code: str, message: str) -> str:
    parts = [] if status is None else [f"status {status}"]
    if code:
        parts.append(code)
    if message:
        parts.append(message)
    return ": ".join(parts) or "no details"
