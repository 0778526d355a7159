"""The pushes Lingma sends for one turn, waiting to be taken: a deque and one waiter, not a queue.

The connection's reader appends every push it routes to a turn; the turn takes all that are there in
one wake-up, and its deadline is a timer on that one wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from common.errors import UpstreamUnavailableError

__all__ = ("JsonObject", "Subscription")

JsonObject = dict[str, Any]


class Subscription:
    """Pushes for one ``requestId`` (plus those without one that this turn could own), in arrival order.

    A plain deque and one waiter rather than an ``asyncio.Queue``: the turn takes every push already here
    in one go (``take``), and a wait for the next one costs one future, with the deadline as a timer on it.
    """

    __slots__ = ("_closed_reason", "_items", "_loop", "_waiter", "request_id", "session_id")

    def __init__(self, request_id: str, session_id: str = "") -> None:
        self.request_id = request_id
        self.session_id = session_id
        """The Lingma session the turn asked in, when it named one (a reused session)."""
        # Held, not looked up per push: on Python 3.11 every get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._items: deque[JsonObject] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed_reason: str | None = None

    async def get(self) -> JsonObject:
        """The next push ``{"method", "params"}``; raises ``UpstreamUnavailableError`` once the socket is gone."""
        if not self._items:
            await self._wait(None)
        return self._items.popleft()

    async def take(self, deadline: float | None = None) -> list[JsonObject]:
        """Every push already here, waiting for one only when there is none.

        What already arrived is always taken, even at the deadline (a ``chat/finish`` that came in time is
        not thrown away); ``TimeoutError`` when none is here and ``deadline`` (loop time) has passed;
        ``UpstreamUnavailableError`` when the socket is gone and every push that came before that was taken.
        """
        if not self._items:
            if deadline is not None and self._loop.time() >= deadline:
                raise TimeoutError
            await self._wait(deadline)
        items = list(self._items)
        self._items.clear()
        return items

    async def _wait(self, deadline: float | None) -> None:
        if self._closed_reason is not None:
            raise UpstreamUnavailableError(self._closed_reason)
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(deadline, _expire, waiter) if deadline is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if not self._items:
            raise UpstreamUnavailableError(self._closed_reason or "the Lingma connection closed")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _push(self, message: JsonObject) -> None:
        self._items.append(message)
        self._wake()

    def _close(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
