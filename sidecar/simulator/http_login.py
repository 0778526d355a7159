"""The plain HTTP server on ``--httpPort``: a tiny login page and the ``/auth/callback`` that logs in.

Routes: ``GET /lingma/login?state=..`` (a form), ``GET /lingma/submit?state=&username=&password=`` (checks
the scenario's ``login.accounts`` when it lists any, then redirects like the real web page does) and
``GET /auth/callback?state=&auth=&token=`` (the state must be a pending ``login/generateUrl`` nonce;
``auth`` is base64 of ``uid\\naid\\nname`` and ``token`` of ``pt\\nrt\\nexpireMs``, anything else non-empty
is accepted and mapped to a deterministic account).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import logging
import urllib.parse
from collections.abc import Mapping

from .scenario import LoginSpec
from .state import LoginNonces, UserInfo, WorkDir, default_user

__all__ = ("LoginHttp", "encode_callback")

_log = logging.getLogger(__name__)
_READ_TIMEOUT_S = 10.0
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
        self._nonces = nonces
        self._login = login

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, headers, body = await self._route(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        payload = body.encode()
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

    async def _route(self, head: bytes) -> tuple[int, dict[str, str], str]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, {}, _page("Bad request", "bad request")
        method, target, _ = parts
        url = urllib.parse.urlsplit(target)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        if method != "GET":
            return 405, {"Allow": "GET"}, _page("Method not allowed", "only GET")
        _log.info("http %s %s", method, url.path)
        if url.path == "/lingma/login":
            return self._login_form(query, "")
        if url.path == "/lingma/submit":
            return self._submit(query)
        if url.path == "/auth/callback":
            return await self._callback(query)
        return 404, {}, _page("Not found", "not found")

    def _login_form(self, query: Mapping[str, str], error: str) -> tuple[int, dict[str, str], str]:
        state = html.escape(query.get("state", ""), quote=True)
        note = f"<p id='error'>{html.escape(error)}</p>" if error else ""
        form = (
            f"<h1>Lingma login</h1>{note}<form method='get' action='/lingma/submit'>"
            f"<input type='hidden' name='state' value='{state}'>"
            "<input id='username' name='username' autocomplete='username'>"
            "<input id='password' name='password' type='password' autocomplete='current-password'>"
            "<button id='login' type='submit'>Log in</button></form>"
        )
        return (401 if error else 200), {"Content-Type": "text/html; charset=utf-8"}, _page("Lingma login", form)

    def _submit(self, query: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        username, password = query.get("username", ""), query.get("password", "")
        accounts = self._login.accounts
        if not username or (accounts and accounts.get(username) != password):
            return self._login_form(query, "invalid username or password")
        user = default_user(self._work.machine_id, username)
        auth, token = encode_callback(
            user.uid, username, user.security_oauth_token, user.refresh_token, user.expire_time
        )
        target = "/auth/callback?" + urllib.parse.urlencode(
            {"state": query.get("state", ""), "auth": auth, "token": token}
        )
        return 302, {"Location": target}, _page("Redirecting", "redirecting")

    async def _callback(self, query: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        state, auth, token = query.get("state", ""), query.get("auth", ""), query.get("token", "")
        if not auth or not token or not self._nonces.consume(state):
            return 400, {}, _page("Login failed", "<h1>Login failed</h1><p>invalid or expired login state</p>")
        if self._login.delay_ms > 0:
            await asyncio.sleep(self._login.delay_ms / 1000)
        self._work.write_user(self._user_from(auth, token))
        _log.info("login callback accepted, user info written")
        ok = "<h1 id='success'>Login successful</h1><p>You can close this page and return to the IDE.</p>"
        return 200, {"Content-Type": "text/html; charset=utf-8"}, _page("Login successful", ok)

    def _user_from(self, auth: str, token: str) -> UserInfo:
        who = _b64_lines(auth, 3)
        user = default_user(self._work.machine_id, who[2] if who else auth[:32])
        if who:
            user.uid, user.aid = who[0], who[1]
        tokens = _b64_lines(token, 3)
        if tokens and tokens[2].isdigit():
            user.security_oauth_token, user.refresh_token, user.expire_time = tokens[0], tokens[1], int(tokens[2])
        return user
