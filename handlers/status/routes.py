"""``/status``: the operator's page. The admin token goes in once, through a form, for a session cookie.

A browser cannot send a Bearer header when it navigates, hence the cookie (HttpOnly, SameSite=Strict). A
token in a URL would end up in history and proxy logs, so any query string is refused. Every state-changing
POST after sign-in carries the session's CSRF token.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie, State

from common.errors import GatewayError
from common.log import REQUEST_ID
from common.protocol import LoginStart
from handlers.context import GatewayContext, context_of, matches_any
from handlers.errors import openai_status
from handlers.status.page import login_form, message_page, status_page
from handlers.status.session import COOKIE, SESSION_TTL_S, csrf_token, csrf_valid, new_session, session_secret
from handlers.version import VERSION

__all__ = ("router",)

FORM_LIMIT = 4096
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
_HEADERS = {"content-security-policy": CSP, "cache-control": "no-store", "referrer-policy": "same-origin"}

AnyRequest = Request[object, object, State]


def _html(body: str, status: int = 200, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(body, status_code=status, media_type="text/html", headers=_HEADERS, cookies=cookies)


def _secrets(ctx: GatewayContext) -> tuple[str, ...]:
    """What opens the page: ADMIN_TOKEN, else the API keys (as for /internal/*)."""
    token = ctx.settings.admin_token
    return (token,) if token else ctx.settings.api_keys


def _refusal(request: AnyRequest, ctx: GatewayContext) -> Response[str] | None:
    """The answers every status route gives before looking at credentials."""
    if request.scope.get("query_string"):
        return _html(
            message_page("Query strings are refused", "The status page takes no URL parameters: a token never goes "
                         "in a URL. Sign in with the form on /status."),
            400,
        )  # fmt: skip
    if not _secrets(ctx):
        return _html(message_page("Status page disabled", "Set ADMIN_TOKEN (or API_KEYS) to use the status page."), 404)
    if request.method == "POST" and not _same_origin(request):
        return _html(message_page("Cross-site request refused", "This form must be sent from the status page."), 403)
    return None


def _same_origin(request: AnyRequest) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: AnyRequest) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _signed_in(request: AnyRequest, ctx: GatewayContext) -> tuple[str, str] | None:
    """(secret, cookie) of a live session, else None."""
    cookie = request.cookies.get(COOKIE)
    secret = session_secret(cookie, _secrets(ctx))
    return (secret, cookie) if secret is not None and cookie is not None else None


def _cookie(request: AnyRequest, value: str, max_age: int) -> Cookie:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    return Cookie(
        key=COOKIE, value=value, path="/status", httponly=True, samesite="strict", secure=secure, max_age=max_age
    )


@get("/status")
async def show(request: AnyRequest) -> Response[str]:
    ctx = context_of(request)
    refused = _refusal(request, ctx)
    if refused is not None:
        return refused
    session = _signed_in(request, ctx)
    if session is None:
        return _html(login_form(), 401)
    secret, cookie = session
    csrf = csrf_token(secret, cookie)
    try:
        stats = await ctx.client.stats()
    except GatewayError as exc:
        return _html(status_page(None, version=VERSION, csrf=csrf, sidecar_error=exc.code))
    return _html(status_page(stats, version=VERSION, csrf=csrf))


@post("/status/session", status_code=303)
async def sign_in(request: AnyRequest) -> Response[str]:
    ctx = context_of(request)
    refused = _refusal(request, ctx)
    if refused is not None:
        return refused
    token = (await _form(request)).get("token", "")
    matched = [s for s in _secrets(ctx) if matches_any(token, (s,))]  # every secret compared, in constant time
    if not token or not matched:
        return _html(login_form("That token is not accepted."), 401)
    secret = matched[0]
    response = _html("", 303, cookies=[_cookie(request, new_session(secret), SESSION_TTL_S)])
    response.headers["location"] = "/status"
    return response


@post("/status/logout", status_code=303)
async def sign_out(request: AnyRequest) -> Response[str]:
    ctx = context_of(request)
    refused = _refusal(request, ctx)
    if refused is not None:
        return refused
    session = _signed_in(request, ctx)
    if session is None or not csrf_valid(*session, (await _form(request)).get("csrf")):
        return _html(message_page("Refused", "This request lacks a valid session or CSRF token."), 403)
    response = _html("", 303, cookies=[_cookie(request, "", 0)])
    response.headers["location"] = "/status"
    return response


@post("/status/instances/{instance:str}/login", status_code=200)
async def start_login(request: AnyRequest) -> Response[str]:
    ctx = context_of(request)
    instance = str(request.path_params["instance"])
    refused = _refusal(request, ctx)
    if refused is not None:
        return refused
    session = _signed_in(request, ctx)
    if session is None:
        return _html(login_form("Sign in first."), 401)
    if not csrf_valid(*session, (await _form(request)).get("csrf")):
        return _html(message_page("Refused", "This request lacks a valid CSRF token; reload the status page."), 403)
    try:
        result = await ctx.client.admin(LoginStart(instance=instance, show_browser=False, request_id=REQUEST_ID.get()))
    except GatewayError as exc:
        return _html(
            message_page("Login not started", f"The sidecar did not answer ({exc.code})."), openai_status(exc.failed)
        )
    return _html(message_page("Login", _login_outcome(instance, result.status, result.json)), result.status)


def _login_outcome(instance: str, status: int, answer: str) -> str:
    """One sentence from the admin answer (its JSON never holds a secret)."""
    try:
        body = json.loads(answer)
    except ValueError:
        body = {}
    if status == 200:
        state = str(body.get("state", "")).replace("_", " ")
        return f"{instance}: {state or 'started'}."
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return f"{instance}: {message or f'refused ({status})'}"


router = Router(path="/", route_handlers=[show, sign_in, sign_out, start_login], include_in_schema=False)
