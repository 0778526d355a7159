"""Backpressure: a global in-flight limit with a bounded wait, then 429 instead of collapse.

A turn waits for two slots, a global one here and its instance's one in the pool, under one deadline that
starts when it arrives: ``remaining_wait`` tells the second wait what is left of the first. Every refusal is
built by ``queue_full``, so ``Retry-After`` is derived the same way whichever slot was missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import AsyncIterator

from common.errors import RateLimitedError
from common.stats import Backpressure

__all__ = ("Admission", "queue_full", "remaining_wait")

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("queue_deadline", default=None)


def remaining_wait(default: float) -> float:
    """Seconds left of the current turn's queue deadline (``default`` outside an admitted turn)."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return default
    return max(0.0, deadline - asyncio.get_running_loop().time())


def queue_full(what: str, limit: int, queue_timeout: float) -> RateLimitedError:
    """The one 429 of backpressure: the wait is as long as the queue timeout, so that is the advice."""
    retry = max(1, math.ceil(queue_timeout))
    return RateLimitedError(
        f"{what} is at its limit of {limit} turns in flight; try again in {retry}s", retry_after_s=retry
    )


class Admission:
    def __init__(self, limit: int, queue_timeout: float) -> None:
        self.limit = limit
        self.queue_timeout = queue_timeout
        self.in_flight = 0
        self.in_flight_max = 0
        self.queued = 0
        self.rejected_total = 0
        self._slots = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def slot(self, waited: float = 0.0) -> AsyncIterator[None]:
        """Hold one in-flight slot; wait up to the queue timeout, else ``RateLimitedError``.

        ``waited`` is what the request already spent in the gateway since it arrived, so the deadline counts
        from its arrival. The deadline also bounds the wait for an instance slot inside (``remaining_wait``).
        """
        budget = self.queue_timeout - min(max(waited, 0.0), self.queue_timeout)
        deadline = asyncio.get_running_loop().time() + budget
        token = _DEADLINE.set(deadline)
        self.queued += 1
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                self.rejected_total += 1
                raise queue_full("the gateway", self.limit, self.queue_timeout) from None
            finally:
                self.queued -= 1
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
            try:
                yield
            finally:
                self.in_flight -= 1
                self._slots.release()
        finally:
            with contextlib.suppress(ValueError):
                _DEADLINE.reset(token)

    def snapshot(self) -> Backpressure:
        return Backpressure(
            in_flight=self.in_flight,
            in_flight_max=self.in_flight_max,
            limit=self.limit,
            queued=self.queued,
            rejected_total=self.rejected_total,
        )
