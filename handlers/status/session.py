"""The status page's browser session: a signed cookie and a CSRF token, both derived from the admin secret.

Nothing is stored server-side, so any handler replica that knows the secret accepts the cookie, and changing
the secret ends every session. The cookie never carries the secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ("COOKIE", "SESSION_TTL_S", "csrf_token", "csrf_valid", "new_session", "session_secret")

COOKIE = "lingma_status"
SESSION_TTL_S = 12 * 3600


def _sign(secret: str, purpose: str, value: str) -> str:
    return hmac.new(secret.encode(), f"lingma-gateway status {purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def new_session(secret: str, now: float | None = None) -> str:
    """A cookie value good for ``SESSION_TTL_S``: ``<expiry>.<signature>``."""
    expiry = str(int((time.time() if now is None else now) + SESSION_TTL_S))
    return f"{expiry}.{_sign(secret, 'session', expiry)}"


def session_secret(cookie: str | None, secrets: tuple[str, ...], now: float | None = None) -> str | None:
    """The secret that signed a live ``cookie``, else None; every secret is compared, in constant time."""
    if not cookie or "." not in cookie:
        return None
    expiry, _, signature = cookie.partition(".")
    if not expiry.isdigit() or int(expiry) < (time.time() if now is None else now):
        return None
    found: str | None = None
    for secret in secrets:
        if hmac.compare_digest(signature.encode(), _sign(secret, "session", expiry).encode()):
            found = secret
    return found


def csrf_token(secret: str, cookie: str) -> str:
    """Bound to the session: a token lifted from one session is worthless in another."""
    return _sign(secret, "csrf", cookie)


def csrf_valid(secret: str, cookie: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), csrf_token(secret, cookie).encode())
