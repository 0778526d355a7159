"""Operator endpoints: stats, the raw model list, logins and session export. They never echo credentials,
except the bundle an export hands out, which is why export always requires ``ADMIN_TOKEN``."""

from __future__ import annotations

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency

from common.errors import NotFoundError
from common.log import REQUEST_ID
from common.protocol import AdminResult, ExportSession, LoginStart, LoginStatus
from handlers.apidoc import api
from handlers.context import GatewayContext, require_admin
from handlers.errors import openai_exception_handlers
from handlers.status import router as status_router

__all__ = ("router",)


@get(
    "/internal/stats",
    guards=[require_admin],
    opt=api("The sidecar's counters: instances, backpressure, cache, tools", "Operations", auth="admin"),
)
async def stats(request: Request[object, object, State], gateway: NamedDependency[GatewayContext]) -> Response[bytes]:
    return Response(msgspec.json.encode(await gateway.client.stats()), media_type="application/json")


@get(
    "/internal/usage",
    guards=[require_admin],
    opt=api("Turns and tokens per API key name and model", "Operations", auth="admin"),
)
async def usage(request: Request[object, object, State], gateway: NamedDependency[GatewayContext]) -> Response[bytes]:
    """Turns and tokens per API key name and model since the sidecar started (see docs/usage-and-tools.md)."""
    stats = await gateway.client.stats()
    return Response(msgspec.json.encode(stats.usage), media_type="application/json")


@get(
    "/internal/models/raw",
    guards=[require_admin],
    opt=api("Lingma's own model list, unchanged (?instance=ID)", "Operations", auth="admin"),
)
async def raw_models(
    request: Request[object, object, State], gateway: NamedDependency[GatewayContext]
) -> Response[bytes]:
    raw = await gateway.client.raw_models(request.query_params.get("instance"))
    return Response(raw.encode(), media_type="application/json")


def _json(result: AdminResult) -> Response[bytes]:
    return Response(result.json.encode(), status_code=result.status, media_type="application/json")


@post(
    "/internal/auto-login/start",
    status_code=200,
    guards=[require_admin],
    opt=api("Start a browser login (?instance=ID; the first logged-out one without)", "Operations", auth="admin"),
)
async def auto_login_start(
    request: Request[object, object, State], gateway: NamedDependency[GatewayContext]
) -> Response[bytes]:
    show = request.query_params.get("show_browser", "").lower() in ("1", "true", "yes")
    op = LoginStart(
        instance=request.query_params.get("instance") or None, show_browser=show, request_id=REQUEST_ID.get()
    )
    return _json(await gateway.client.admin(op))


@get(
    "/internal/auto-login/status",
    guards=[require_admin],
    opt=api("Each instance's login state and attempts", "Operations", auth="admin"),
)
async def auto_login_status(
    request: Request[object, object, State], gateway: NamedDependency[GatewayContext]
) -> Response[bytes]:
    return _json(await gateway.client.admin(LoginStatus()))


@post(
    "/internal/session/export",
    status_code=200,
    opt=api("Export a logged-in instance as a session bundle (needs ADMIN_TOKEN)", "Operations", auth="admin"),
)
async def session_export(
    request: Request[object, object, State], gateway: NamedDependency[GatewayContext]
) -> Response[bytes]:
    """Checks its own access: without ``ADMIN_TOKEN`` it refuses with 403 before any key is looked at."""
    if not gateway.settings.admin_token:
        if not gateway.settings.api_keys:
            raise NotFoundError("not found")
        body = (
            b'{"error": {"message": "session export hands out account credentials: it requires ADMIN_TOKEN, '
            b'which is not set", "type": "permission_error", "param": null, "code": "admin_token_required"}}'
        )
        return Response(body, status_code=403, media_type="application/json")
    gateway.authenticate_admin(request)
    op = ExportSession(instance=request.query_params.get("instance") or None, request_id=REQUEST_ID.get())
    return _json(await gateway.client.admin(op))


router = Router(
    path="/",
    route_handlers=[stats, usage, raw_models, auto_login_start, auto_login_status, session_export, status_router],
    exception_handlers=openai_exception_handlers,
)
