"""What the socket server needs from whatever serves turns: Lingma's pool, or a scripted test seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from common.conversation import Conversation
from common.protocol import AdminRequest, AdminResult, Complete, Event, ModelInfo
from common.stats import PoolStats

__all__ = ("Backend",)


class Backend(Protocol):
    async def open(self) -> None:
        """Open what must work before the socket is served (the session cache); raise ``StartupError`` if not."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def complete(self, op: Complete) -> AsyncIterator[Event]:
        """Yield ``Started``, then events, then one terminal; raising ``GatewayError`` also ends the turn."""
        ...

    async def count_tokens(self, conversation: Conversation) -> int: ...

    async def models(self) -> list[ModelInfo]: ...

    async def raw_models(self, instance: str | None) -> str: ...

    async def admin(self, op: AdminRequest) -> AdminResult:
        """Login and session-bundle operations (docs/login.md)."""
        ...

    def readiness(self) -> tuple[bool, int]:
        """Whether a turn could be served now, and how many instances are ready."""
        ...

    def pool_stats(self) -> PoolStats:
        """The ``pool`` section of the stats object (docs/operations.md §6); the server counts the rest."""
        ...
