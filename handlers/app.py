"""The app factory: a bundle is "include every router", a per-route deploy is "include one"."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Sequence

from litestar import Litestar, Router
from litestar.middleware import DefineMiddleware

from common.client import SidecarClient
from common.settings import Settings
from handlers.context import GATEWAY_DEPENDENCIES, GatewayContext
from handlers.dialect import any_dialect_exception_handlers
from handlers.health import router as health_router
from handlers.observability import RequestIdMiddleware
from handlers.routes import ROUTES

__all__ = ("ROUTES", "create_app")


def _router(name: str) -> Router:
    if name not in ROUTES:
        raise ValueError(f"unknown route {name!r}; choose from {', '.join(ROUTES)}")
    module = importlib.import_module(f"handlers.{name}")
    router: Router = module.router
    return router


def create_app(
    settings: Settings,
    routes: Sequence[str] = ROUTES,
    *,
    context: GatewayContext | None = None,
    client: SidecarClient | None = None,
) -> Litestar:
    """The app for ``routes``; its sidecar client is ``client`` (any transport), else one on the settings' socket."""
    if context is None:
        context = GatewayContext(settings=settings, client=client or SidecarClient(settings.socket_path))
    ctx = context
    routers = [_router(name) for name in dict.fromkeys(routes)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.gateway = ctx
        try:
            yield
        finally:
            await ctx.client.aclose()

    return Litestar(
        route_handlers=[health_router, *routers],
        lifespan=[lifespan],
        dependencies=GATEWAY_DEPENDENCIES,
        middleware=[DefineMiddleware(RequestIdMiddleware)],  # type: ignore[arg-type]
        exception_handlers=any_dialect_exception_handlers,
        request_max_body_size=None,
        openapi_config=None,
        logging_config=None,
    )
