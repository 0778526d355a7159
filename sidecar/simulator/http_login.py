"""The plain HTTP server on ``--httpPort``: a small login site and the ``/auth/callback`` that logs in.

Routes (all scriptable from the scenario's ``login`` block):
- ``GET /lingma/login?state=..``: the entry; with ``redirects: N`` it goes through N hops
  (``/account/hop?n=k``) to ``/account/login.htm``, the sign-in form (a captcha page with ``captcha``).
- ``POST /lingma/submit`` (form body ``state``, ``username``, ``password``; a GET is 405, so a password
  never travels in a query string): checks ``login.accounts`` when it lists any; a wrong password gets
  the form again with ``id='error'``; with ``second_step`` a confirmation page (``id='second-step'``)
  whose ``POST /lingma/confirm`` continues; then a redirect to the callback, as the real web page does.
- ``GET /auth/callback?state=&auth=&token=``: the state must be a pending ``login/generateUrl`` nonce;
  ``auth`` is base64 of ``uid\\naid\\nname`` and ``token`` of ``pt\\nrt\\nexpireMs``, anything else
  non-empty is accepted and mapped to a deterministic account.
- ``expire_after_ms``: the process's first login expires that long after it was made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import logging
import secrets
import time
import urllib.parse
from collections.abc import Mapping

from .scenario import LoginSpec
from .state import LoginNonces, UserInfo, WorkDir, default_user

__all__ = ("LoginHttp", "encode_callback")

_log = logging.getLogger(__name__)
_READ_TIMEOUT_S = 10.0
_MAX_BODY = 64 * 1024
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
}


def _page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"


def _b64_lines(value: str, count: int) -> list[str] | None:
    try:
        padded = value + "=" * (-len(value) % 4)
        lines = base64.urlsafe_b64decode(padded.encode()).decode().split("\n")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return lines if len(lines) == count and all(lines) else None


def encode_callback(uid: str, name: str, token: str, refresh: str, expire_ms: int) -> tuple[str, str]:
    """The ``auth`` and ``token`` query values the simulated web page hands to ``/auth/callback``."""
    auth = base64.urlsafe_b64encode(f"{uid}\n{uid}\n{name}".encode()).decode()
    tokens = base64.urlsafe_b64encode(f"{token}\n{refresh}\n{expire_ms}".encode()).decode()
    return auth, tokens


class LoginHttp:
    def __init__(self, work: WorkDir, nonces: LoginNonces, login: LoginSpec) -> None:
        self._work = work
        self.nonces = nonces
        self._login = login
        self._tickets: dict[str, tuple[str, str]] = {}
        self._expiry_used = False

    def first_login(self, user: UserInfo) -> UserInfo:
        """Apply ``expire_after_ms`` to the first login this process makes."""
        if self._login.expire_after_ms > 0 and not self._expiry_used:
            self._expiry_used = True
            user.expire_time = int(time.time() * 1000 + self._login.expire_after_ms)
        return user

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                body = await _read_body(reader, head)
            status, headers, page = await self._route(head, body)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
            writer.close()
            return
        payload = page.encode()
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}",
            f"Content-Length: {len(payload)}",
            "Connection: close",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _route(self, head: bytes, body: bytes) -> tuple[int, dict[str, str], str]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, {}, _page("Bad request", "bad request")
        method, target, _ = parts
        url = urllib.parse.urlsplit(target)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        _log.info("http %s %s", method, url.path)
        if url.path in ("/lingma/submit", "/lingma/confirm"):
            if method != "POST":
                return 405, {"Allow": "POST"}, _page("Method not allowed", "only POST")
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
            return self._submit(form) if url.path == "/lingma/submit" else self._confirm(form)
        if method != "GET":
            return 405, {"Allow": "GET"}, _page("Method not allowed", "only GET")
        if url.path == "/lingma/login":
            return self._hop(query, 0)
        if url.path == "/account/hop":
            hop = query.get("n", "0")
            return self._hop(query, int(hop) if hop.isdigit() else 0)
        if url.path == "/account/login.htm":
            return self._sign_in(query, "")
        if url.path == "/auth/callback":
            return await self._callback(query)
        return 404, {}, _page("Not found", "not found")

    def _hop(self, query: Mapping[str, str], hop: int) -> tuple[int, dict[str, str], str]:
        state = query.get("state", "")
        if hop < self._login.redirects:
            target = "/account/hop?" + urllib.parse.urlencode({"n": hop + 1, "state": state})
        elif self._login.redirects:
            target = "/account/login.htm?" + urllib.parse.urlencode({"state": state})
        else:
            return self._sign_in(query, "")
        return 302, {"Location": target}, _page("Redirecting", "redirecting")

    def _sign_in(self, query: Mapping[str, str], error: str) -> tuple[int, dict[str, str], str]:
        if self._login.captcha:
            captcha = "<h1>Security check</h1><div id='captcha'>Slide to verify that you are human</div>"
            return 200, _HTML, _page("Security check", captcha)
        state = html.escape(query.get("state", ""), quote=True)
        note = f"<p id='error'>{html.escape(error)}</p>" if error else ""
        form = (
            f"<h1>Lingma login</h1>{note}<form method='post' action='/lingma/submit'>"
            f"<input type='hidden' name='state' value='{state}'>"
            "<input id='username' name='username' autocomplete='username'>"
            "<input id='password' name='password' type='password' autocomplete='current-password'>"
            "<button id='login' type='submit'>Log in</button></form>"
        )
        return (401 if error else 200), _HTML, _page("Lingma login", form)

    def _submit(self, form: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        username, password = form.get("username", ""), form.get("password", "")
        accounts = self._login.accounts
        if self._login.captcha:
            return self._sign_in(form, "")
        if not username or (accounts and accounts.get(username) != password):
            return self._sign_in(form, "invalid username or password")
        if self._login.second_step:
            ticket = secrets.token_hex(16)
            self._tickets[ticket] = (form.get("state", ""), username)
            confirm = (
                f"<h1 id='second-step'>Continue as {html.escape(username)}?</h1>"
                "<form method='post' action='/lingma/confirm'>"
                f"<input type='hidden' name='ticket' value='{ticket}'>"
                "<button id='continue' type='submit'>Continue</button></form>"
            )
            return 200, _HTML, _page("Confirm", confirm)
        return self._to_callback(form.get("state", ""), username)

    def _confirm(self, form: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        found = self._tickets.pop(form.get("ticket", ""), None)
        if found is None:
            return 400, _HTML, _page("Login failed", "<h1>Login failed</h1><p>unknown or used ticket</p>")
        return self._to_callback(*found)

    def _to_callback(self, state: str, username: str) -> tuple[int, dict[str, str], str]:
        user = self.first_login(default_user(self._work.machine_id, username))
        auth, token = encode_callback(
            user.uid, username, user.security_oauth_token, user.refresh_token, user.expire_time
        )
        target = "/auth/callback?" + urllib.parse.urlencode({"state": state, "auth": auth, "token": token})
        return 302, {"Location": target}, _page("Redirecting", "redirecting")

    async def _callback(self, query: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        state, auth, token = query.get("state", ""), query.get("auth", ""), query.get("token", "")
        if not auth or not token or not self.nonces.consume(state):
            return 400, {}, _page("Login failed", "<h1>Login failed</h1><p>invalid or expired login state</p>")
        if self._login.delay_ms > 0:
            await asyncio.sleep(self._login.delay_ms / 1000)
        self._work.write_user(self._user_from(auth, token))
        _log.info("login callback accepted, user info written")
        ok = "<h1 id='success'>Login successful</h1><p>You can close this page and return to the IDE.</p>"
        return 200, _HTML, _page("Login successful", ok)

    def _user_from(self, auth: str, token: str) -> UserInfo:
        who = _b64_lines(auth, 3)
        user = default_user(self._work.machine_id, who[2] if who else auth[:32])
        if who:
            user.uid, user.aid = who[0], who[1]
        tokens = _b64_lines(token, 3)
        if tokens and tokens[2].isdigit():
            user.security_oauth_token, user.refresh_token, user.expire_time = tokens[0], tokens[1], int(tokens[2])
        return user


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if not 0 <= length <= _MAX_BODY:
        raise ValueError("body too large")
    return await reader.readexactly(length) if length else b""
