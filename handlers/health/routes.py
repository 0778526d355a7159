"""``/healthz``: should this process be restarted? ``/readyz``: could a turn run now (asks the sidecar)?

A split handler's ``/healthz`` stays 200 while its sidecar is away (restarting the handler would not bring
it back); only ``/readyz`` says so. In ``serve``, which owns its sidecar, ``/healthz`` fails once the sidecar
cannot come back, so that the orchestrator restarts the process.
"""

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


class Health(msgspec.Struct, kw_only=True):
    """``ok``, or 503 ``unhealthy`` with a ``reason`` when ``serve``'s sidecar cannot come back."""

    status: Literal["ok", "unhealthy"]
    version: str
    reason: str | None = None


class Readiness(msgspec.Struct, kw_only=True):
    """503 with ``not_ready`` or ``unavailable`` (and a ``reason``) when no turn could run."""

    status: Literal["ready", "not_ready", "unavailable"]
    instances_ready: int | None = None
    reason: str | None = None


@get("/healthz", opt=api("Liveness and the running version", "Operations", response=Health, errors=None, auth="none"))
async def healthz(request: Request[object, object, State]) -> Response[dict[str, str]]:
    liveness = context_of(request).liveness
    problem = liveness() if liveness is not None else None
    if problem is not None:
        return Response({"status": "unhealthy", "version": VERSION, "reason": problem}, status_code=503)
    return Response({"status": "ok", "version": VERSION})


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
