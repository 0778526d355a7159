"""Counters the sidecar keeps; handlers are stateless, so every number in /internal/stats lives here."""

from __future__ import annotations

import time
from collections import Counter, deque

from common.stats import RecentFailures

__all__ = ("RECENT_FAILURES_WINDOW_S", "StatsBook")

RECENT_FAILURES_WINDOW_S = 900.0
"""How far back ``recent_failures`` looks: what an operator glancing at the status page wants to see."""
_RECENT_FAILURES_KEPT = 1000


class StatsBook:
    """Plain counters, grouped by the section of the stats object (docs/operations.md §6) they belong to, and
    the failures of the last minutes."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.tools: Counter[str] = Counter()
        self.session_cache: Counter[str] = Counter()
        self._failures: deque[tuple[float, str]] = deque(maxlen=_RECENT_FAILURES_KEPT)

    def note_failure(self, code: str) -> None:
        """A turn ended with a failure of kind ``code`` (the shared error vocabulary)."""
        self._failures.append((time.monotonic(), code))

    def recent_failures(self) -> RecentFailures:
        now = time.monotonic()
        while self._failures and now - self._failures[0][0] > RECENT_FAILURES_WINDOW_S:
            self._failures.popleft()
        kinds = Counter(code for _, code in self._failures)
        last = self._failures[-1] if self._failures else None
        return RecentFailures(
            window_s=RECENT_FAILURES_WINDOW_S,
            by_kind=dict(sorted(kinds.items())),
            last_kind=last[1] if last else None,
            last_age_s=round(now - last[0], 1) if last else None,
        )
