"""Counters the sidecar keeps; handlers are stateless, so every number in /internal/stats lives here."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ("StatsBook",)


class StatsBook:
    """Plain counters, grouped by the section of the stats object (docs/operations.md §6) they belong to."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.tools: Counter[str] = Counter()
        self.session_cache: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "session_cache": dict(sorted(self.session_cache.items())),
            "tools": dict(sorted(self.tools.items())),
        }
