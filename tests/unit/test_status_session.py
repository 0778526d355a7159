"""The status page's signed session cookie and its CSRF token."""

from __future__ import annotations

from handlers.status.session import SESSION_TTL_S, csrf_token, csrf_valid, new_session, session_secret

NOW = 1_800_000_000.0


def test_a_session_is_accepted_only_by_the_secret_that_signed_it() -> None:
    cookie = new_session("admin", NOW)
    assert session_secret(cookie, ("admin",), NOW) == "admin"
    assert session_secret(cookie, ("other", "admin"), NOW) == "admin"
    assert session_secret(cookie, ("other",), NOW) is None
    assert "admin" not in cookie


def test_a_session_expires_and_cannot_be_extended() -> None:
    cookie = new_session("admin", NOW)
    assert session_secret(cookie, ("admin",), NOW + SESSION_TTL_S - 1) == "admin"
    assert session_secret(cookie, ("admin",), NOW + SESSION_TTL_S + 1) is None
    expiry, _, signature = cookie.partition(".")
    stretched = f"{int(expiry) + 3600}.{signature}"
    assert session_secret(stretched, ("admin",), NOW) is None


def test_malformed_cookies_are_refused() -> None:
    for cookie in (None, "", "abc", ".", "x.y", "123.", f"{int(NOW) + 10}.zz"):
        assert session_secret(cookie, ("admin",), NOW) is None


def test_csrf_is_bound_to_the_session_and_secret() -> None:
    one, two = new_session("admin", NOW), new_session("admin", NOW + 1)
    token = csrf_token("admin", one)
    assert csrf_valid("admin", one, token)
    assert not csrf_valid("admin", two, token)
    assert not csrf_valid("other", one, token)
    assert not csrf_valid("admin", one, None)
    assert not csrf_valid("admin", one, "")
