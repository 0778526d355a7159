"""``lingma-gateway ping``: a probe for the sidecar's container, which has no HTTP port.

It asks the sidecar over its Unix socket, the same way a route does, so it fails exactly when routes would.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from common.client import SidecarClient
from common.errors import GatewayError
from common.protocol import Pong

__all__ = ("ping",)


async def _ask(path: Path, timeout: float) -> Pong:
    client = SidecarClient(path, connect_timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            return await client.ping()
    finally:
        await client.aclose()


def ping(path: Path, *, ready: bool, timeout: float = 5.0) -> int:
    """0 when the sidecar answers (and, with ``ready``, has a ready instance); 1 with the reason otherwise."""
    try:
        pong = asyncio.run(_ask(path, timeout))
    except (GatewayError, OSError, TimeoutError) as exc:
        print(f"lingma-gateway ping: the sidecar at {path} does not answer: {exc}", file=sys.stderr)
        return 1
    if ready and not pong.ready:
        print(f"lingma-gateway ping: the sidecar answers but no instance is ready ({path})", file=sys.stderr)
        return 1
    print(f"ok: {pong.instances_ready} instance(s) ready")
    return 0
