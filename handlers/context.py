"""What every route needs at run time, owned by the app's lifespan and reached through ``app.state``.

Routes receive it by dependency injection (``gateway: GatewayContext``, from ``GATEWAY_DEPENDENCIES``), and
the key checks are guards (``require_api_key``, ``require_admin``) that run before the body is read; the API
key let in is ``caller_key(request)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler

from common.client import SidecarClient
from common.conversation import Conversation
from common.errors import NotFoundError, UnauthorizedError
from common.settings import Settings

__all__ = (
    "GATEWAY_DEPENDENCIES",
    "Connection",
    "GatewayContext",
    "api_key_of",
    "caller_key",
    "context_of",
    "key_fingerprint",
    "matches_any",
    "require_admin",
    "require_api_key",
)

Connection = ASGIConnection[Any, Any, Any, Any]
_CALLER_KEY = "lingma_gateway.api_key"
"""Where ``require_api_key`` leaves the key it accepted, in the request's scope state."""


@dataclass
class GatewayContext:
    settings: Settings
    client: SidecarClient
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the process begins a graceful shutdown; open streams then finish or fail with a terminal."""
    liveness: Callable[[], str | None] | None = None
    """In ``serve``: why the process should be restarted (its sidecar cannot come back), else None."""

    def authenticate(self, request: Connection) -> str:
        """Check the caller's API key in constant time; return it ('' when the gateway is open)."""
        keys = self.settings.api_keys
        if not keys:
            return ""
        presented = api_key_of(request)
        if presented is None:
            raise UnauthorizedError("missing API key: send Authorization: Bearer <key> or x-api-key")
        if not matches_any(presented, keys):
            raise UnauthorizedError("invalid API key")
        return presented

    def for_key(self, conversation: Conversation, key: str) -> Conversation:
        """The conversation labelled with the key's name, so the sidecar can meter and cap it."""
        return msgspec.structs.replace(conversation, api_key_name=self.settings.key_name(key))

    def authenticate_admin(self, request: Connection) -> None:
        """Admin routes take ADMIN_TOKEN; without one they fall back to the API keys (404 with neither)."""
        token = self.settings.admin_token
        presented = api_key_of(request)
        if token:
            if presented is None or not matches_any(presented, (token,)):
                raise UnauthorizedError("invalid or missing admin token")
            return
        if not self.settings.api_keys:
            raise NotFoundError("not found")
        if presented is None or not matches_any(presented, self.settings.api_keys):
            raise UnauthorizedError("invalid or missing admin token")


def matches_any(presented: str, keys: tuple[str, ...]) -> bool:
    given = presented.encode()
    found = False
    for key in keys:
        # Compare against every key, so timing reveals neither which key nor how much of it matched.
        found |= hmac.compare_digest(given, key.encode())
    return found


def api_key_of(request: Connection) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(("lingma-gateway:" + key).encode()).hexdigest()[:16] if key else ""


def context_of(request: Connection) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx


async def _provide_gateway(request: Request[object, object, State]) -> GatewayContext:
    return context_of(request)


GATEWAY_DEPENDENCIES = {"gateway": Provide(_provide_gateway)}
"""The app's dependencies: every route may take ``gateway: GatewayContext``."""


async def require_api_key(connection: Connection, _handler: BaseRouteHandler) -> None:
    """The guard of every dialect route: 401 in the route's dialect unless the caller's key is one of ours.

    Guards are coroutines because Litestar runs a plain function guard in a worker thread, a thread hop
    per request for a check that never blocks.
    """
    connection.scope.setdefault("state", {})[_CALLER_KEY] = context_of(connection).authenticate(connection)


async def require_admin(connection: Connection, _handler: BaseRouteHandler) -> None:
    """The guard of the operator routes: ``ADMIN_TOKEN``, else an API key (404 with neither)."""
    context_of(connection).authenticate_admin(connection)


def caller_key(request: Connection) -> str:
    """The API key ``require_api_key`` accepted for this request ('' when the gateway is open)."""
    key = request.scope.get("state", {}).get(_CALLER_KEY, "")
    return key if isinstance(key, str) else ""
