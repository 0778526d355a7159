"""``/healthz`` answers whenever the process does; ``/readyz`` asks the sidecar whether a turn could run."""

from __future__ import annotations

from litestar import Request, Response, Router, get
from litestar.datastructures import State

from common.errors import GatewayError
from handlers.context import context_of
from handlers.version import VERSION

__all__ = ("router",)


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": VERSION}


@get("/readyz")
async def readyz(request: Request[object, object, State]) -> Response[dict[str, object]]:
    ctx = context_of(request)
    try:
        pong = await ctx.client.ping()
    except GatewayError as exc:
        return Response({"status": "unavailable", "reason": exc.code}, status_code=503)
    ready = pong.ready and not ctx.draining.is_set()
    body: dict[str, object] = {"status": "ready" if ready else "not_ready", "instances_ready": pong.instances_ready}
    return Response(body, status_code=200 if ready else 503)


router = Router(path="/", route_handlers=[healthz, readyz])
