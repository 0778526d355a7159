"""``/healthz`` answers whenever the process does; ``/readyz`` asks the sidecar whether a turn could run."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Request, Response, Router, get
from litestar.datastructures import State

from common.errors import GatewayError
from handlers.apidoc import api
from handlers.context import context_of
from handlers.version import VERSION

__all__ = ("Health", "Readiness", "router")


class Health(msgspec.Struct):
    status: Literal["ok"]
    version: str


class Readiness(msgspec.Struct, kw_only=True):
    """503 with ``not_ready`` or ``unavailable`` (and a ``reason``) when no turn could run."""

    status: Literal["ready", "not_ready", "unavailable"]
    instances_ready: int | None = None
    reason: str | None = None


@get("/healthz", opt=api("Liveness and the running version", "Operations", response=Health, errors=None, auth="none"))
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": VERSION}


@get("/readyz", opt=api("Readiness: could a turn run now", "Operations", response=Readiness, errors=None, auth="none"))
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
