"""A sidecar in the test's own event loop, reached through the in-process transport.

The handlers' ``SidecarClient`` talks to a real ``SidecarServer`` (handshake, dispatch, admission, the
terminal-frame guarantee) over an in-memory pipe, so every frame still goes through the codec; only the
Unix socket is left out. ``routes_app`` puts the handlers' app on top, for Litestar's test client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Litestar

from common.client import InProcessTransport, SidecarClient
from common.settings import Settings
from handlers.app import ROUTES, create_app
from sidecar.admission import Admission
from sidecar.backend import Backend
from sidecar.backends.scripted import ScriptedBackend
from sidecar.server import SidecarServer
from sidecar.stats import StatsBook

__all__ = ("InProcessSidecar", "in_process_sidecar", "lingma_sidecar", "routes_app", "scripted_sidecar")

UNUSED_SOCKET = Path("/nonexistent/in-process.sock")
"""A server reached in process never listens, so its socket path is never made."""


@dataclass
class InProcessSidecar:
    server: SidecarServer
    backend: Backend
    stats: StatsBook
    admission: Admission
    transport: InProcessTransport
    client: SidecarClient

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.server.drain()
        await self.transport.aclose()
        await self.backend.stop()


def in_process_sidecar(
    backend: Backend, stats: StatsBook, *, max_in_flight: int = 32, queue_timeout: float = 5.0
) -> InProcessSidecar:
    admission = Admission(max_in_flight, queue_timeout)
    server = SidecarServer(UNUSED_SOCKET, backend, admission=admission, stats=stats)
    transport = InProcessTransport(server.serve_connection)
    return InProcessSidecar(server, backend, stats, admission, transport, SidecarClient(transport))


def scripted_sidecar(script: dict[str, Any] | None = None, **kwargs: Any) -> InProcessSidecar:
    stats = StatsBook()
    backend = ScriptedBackend(json.dumps(script).encode() if script else None, stats)
    return in_process_sidecar(backend, stats, **kwargs)


def routes_app(sidecar: InProcessSidecar, settings: Settings | None = None, routes: Sequence[str] = ROUTES) -> Litestar:
    return create_app(settings or Settings(), routes, client=sidecar.client)


async def lingma_sidecar(instances: Sequence[Any], settings: Settings, **kwargs: Any) -> InProcessSidecar:
    """The real Lingma backend (pool, turns, session cache in memory) on stand-in instances, in process."""
    from sidecar.pool import Pool
    from sidecar.service import LingmaBackend

    stats = StatsBook()
    backend = LingmaBackend(settings, stats, pool=Pool(settings, instances=instances), cache_path=Path(":memory:"))
    await backend.cache.open()
    side = in_process_sidecar(backend, stats, **kwargs)
    return side
