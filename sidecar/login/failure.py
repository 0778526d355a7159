"""How a login attempt fails: a reason fit for an operator, and whether another attempt may help."""

from __future__ import annotations

import re

__all__ = ("LoginFailed", "scrub")

_QUERY = re.compile(r"(https?://[^\s?#\"']+)[?#][^\s\"']*")


class LoginFailed(Exception):
    """One attempt failed. ``retry`` is False when only a person can get past (a captcha, an SMS code)."""

    def __init__(self, reason: str, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def scrub(text: str, limit: int = 200) -> str:
    """A library's error message without URL queries (a callback URL carries the login's tokens)."""
    first = (text.strip().splitlines() or [""])[0]
    first = _QUERY.sub(r"\1?…", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"
