"""Operator endpoints: stats and the raw model list. They never echo credentials."""

from __future__ import annotations

import json

from litestar import Request, Response, Router, get
from litestar.datastructures import State

from handlers.apidoc import api
from handlers.context import context_of
from handlers.errors import openai_exception_handlers
from handlers.status import router as status_router

__all__ = ("router",)


@get(
    "/internal/stats",
    opt=api("The sidecar's counters: instances, backpressure, cache, tools", "Operations", auth="admin"),
)
async def stats(request: Request[object, object, State]) -> Response[bytes]:
    ctx = context_of(request)
    ctx.authenticate_admin(request)
    return Response((await ctx.client.stats()).encode(), media_type="application/json")


@get("/internal/usage", opt=api("Turns and tokens per API key name and model", "Operations", auth="admin"))
async def usage(request: Request[object, object, State]) -> Response[bytes]:
    """Turns and tokens per API key name and model since the sidecar started (see docs/usage-and-tools.md)."""
    ctx = context_of(request)
    ctx.authenticate_admin(request)
    stats = json.loads(await ctx.client.stats())
    return Response(json.dumps(stats.get("usage", {})).encode(), media_type="application/json")


@get("/internal/models/raw", opt=api("Lingma's own model list, unchanged (?instance=ID)", "Operations", auth="admin"))
async def raw_models(request: Request[object, object, State]) -> Response[bytes]:
    ctx = context_of(request)
    ctx.authenticate_admin(request)
    raw = await ctx.client.raw_models(request.query_params.get("instance"))
    return Response(raw.encode(), media_type="application/json")


router = Router(
    path="/",
    route_handlers=[stats, usage, raw_models, status_router],
    exception_handlers=openai_exception_handlers,
)
