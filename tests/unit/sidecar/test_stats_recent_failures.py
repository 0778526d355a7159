"""The sidecar's window of recent failures, counted by kind and forgotten after the window."""

from __future__ import annotations

import pytest

from common.stats import RecentFailures
from sidecar import stats
from sidecar.stats import RECENT_FAILURES_WINDOW_S, StatsBook


def test_failures_are_counted_by_kind_and_age_out(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(stats.time, "monotonic", lambda: now[0])
    book = StatsBook()
    assert book.recent_failures() == RecentFailures(
        window_s=RECENT_FAILURES_WINDOW_S, by_kind={}, last_kind=None, last_age_s=None
    )
    book.note_failure("upstream_error")
    now[0] += 10
    book.note_failure("rate_limited")
    book.note_failure("upstream_error")
    now[0] += 5
    recent = book.recent_failures()
    assert recent.by_kind == {"rate_limited": 1, "upstream_error": 2}
    assert recent.last_kind == "upstream_error" and recent.last_age_s == 5.0
    now[0] += RECENT_FAILURES_WINDOW_S - 10  # the first failure is now older than the window
    assert book.recent_failures().by_kind == {"rate_limited": 1, "upstream_error": 1}
    now[0] += 100
    assert book.recent_failures().by_kind == {}
