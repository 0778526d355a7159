"""A fair share per API key: at most ``limit`` turns in flight for any one key (0 turns the cap off).

It is checked before the global queue and answers at once: a key already at its share gains nothing by
waiting in a queue that other keys need, and its client gets a 429 that says which limit it met.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from common.errors import RateLimitedError
from common.stats import KeyShareStats

__all__ = ("KeyShare",)

RETRY_AFTER_S = 1.0


class KeyShare:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: Counter[str] = Counter()
        self.in_flight_max: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Count one turn of ``key`` for as long as it runs (or waits for a global slot)."""
        if self.limit and self.in_flight[key] >= self.limit:
            self.rejected[key] += 1
            raise RateLimitedError(
                f"API key {key!r} is at its limit of {self.limit} turns in flight (GATEWAY_KEY_MAX_IN_FLIGHT); "
                "wait for one of its turns to finish",
                retry_after_s=RETRY_AFTER_S,
            )
        self.in_flight[key] += 1
        self.in_flight_max[key] = max(self.in_flight_max[key], self.in_flight[key])
        try:
            yield
        finally:
            self.in_flight[key] -= 1
            if not self.in_flight[key]:
                del self.in_flight[key]

    def snapshot(self) -> KeyShareStats:
        return KeyShareStats(
            limit=self.limit,
            in_flight=dict(sorted(self.in_flight.items())),
            in_flight_max=dict(sorted(self.in_flight_max.items())),
            rejected_total=dict(sorted(self.rejected.items())),
        )
