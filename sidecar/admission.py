"""Backpressure: a global in-flight limit with a bounded wait, then 429 instead of collapse."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from common.errors import RateLimitedError

__all__ = ("Admission",)


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
    async def slot(self) -> AsyncIterator[None]:
        """Hold one in-flight slot; wait up to the queue timeout, else ``RateLimitedError``."""
        self.queued += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            self.rejected_total += 1
            retry = max(1, round(self.queue_timeout))
            raise RateLimitedError(
                f"the gateway is at its limit of {self.limit} turns in flight; try again in {retry}s",
                retry_after_s=float(retry),
            ) from None
        finally:
            self.queued -= 1
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()

    def snapshot(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "in_flight_max": self.in_flight_max,
            "limit": self.limit,
            "queued": self.queued,
            "rejected_total": self.rejected_total,
        }
