"""What every route needs at run time, owned by the app's lifespan and reached through ``app.state``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from litestar import Request
from litestar.datastructures import State

from common.client import SidecarClient
from common.conversation import Conversation
from common.errors import NotFoundError, UnauthorizedError
from common.settings import Settings

__all__ = ("GatewayContext", "api_key_of", "context_of", "key_fingerprint", "matches_any")


@dataclass
class GatewayContext:
    settings: Settings
    client: SidecarClient
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the process begins a graceful shutdown; open streams then finish or fail with a terminal."""
    liveness: Callable[[], str | None] | None = None
    """In ``serve``: why the process should be restarted (its sidecar cannot come back), else None."""

    def authenticate(self, request: Request[object, object, State]) -> str:
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

    def authenticate_admin(self, request: Request[object, object, State]) -> None:
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


def api_key_of(request: Request[object, object, State]) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(("lingma-gateway:" + key).encode()).hexdigest()[:16] if key else ""


def context_of(request: Request[object, object, State]) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx
