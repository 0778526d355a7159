"""The HTTP process: the app for some routes, served by uvicorn behind the guarded HTTP parser.

Imported only once a command serves HTTP: ``serve`` starts its sidecar first, so the two load at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from common.client import SidecarClient
from common.settings import Settings
from handlers.app import create_app
from handlers.context import GatewayContext
from handlers.http_guard import HttpLimits, guarded_protocol
from handlers.streaming import DRAIN_GRACE

__all__ = ("http_limits", "http_server")

log = logging.getLogger("lingma_gateway")


class _Server(uvicorn.Server):
    """Uvicorn, plus telling open streams that a graceful shutdown began."""

    def __init__(self, config: uvicorn.Config, ctx: GatewayContext, routes: tuple[str, ...]) -> None:
        super().__init__(config)
        self._ctx = ctx
        self._routes = routes

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        settings = self._ctx.settings
        where = f"http://{settings.gateway_host}:{settings.gateway_port}"
        log.info("listening on %s (routes: %s)", where, ", ".join(self._routes))
        super().run(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Like uvicorn's, without re-raising the signal afterwards: ``serve`` still has its child to stop."""
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._ctx.draining.set)
        super().handle_exit(sig, frame)


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(
        max_request_line=settings.gateway_max_request_line,
        max_header_bytes=settings.gateway_max_header_bytes,
        max_headers=settings.gateway_max_headers,
        header_timeout=settings.gateway_header_timeout_sec,
        body_timeout=settings.gateway_body_timeout_sec,
    )


def http_server(
    settings: Settings, routes: tuple[str, ...], liveness: Callable[[], str | None] | None = None
) -> uvicorn.Server:
    """The server for ``routes``, built and ready to ``run()``; ``liveness`` feeds ``/healthz`` (see ``serve``)."""
    ctx = GatewayContext(settings=settings, client=SidecarClient(settings.socket_path), liveness=liveness)
    app = create_app(settings, routes, context=ctx)
    config = uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        http=guarded_protocol(http_limits(settings)),
        limit_concurrency=settings.gateway_max_connections,
        timeout_keep_alive=settings.gateway_keepalive_timeout_sec,  # type: ignore[arg-type]  # a float works
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(DRAIN_GRACE) + 5,
        lifespan="on",
    )
    return _Server(config, ctx, routes)
