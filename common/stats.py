"""The stats object (docs/operations.md §6) as types: what the sidecar counts, as ``/metrics``, ``/status`` and
``/internal/stats`` read it.

Every key is always present (no defaults are omitted), so the JSON an operator reads has one fixed shape.
The open-ended counter sections (``requests``, ``session_cache``, ``tools``) stay maps: a counter is absent
until it is first counted.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

__all__ = (
    "Backpressure",
    "InstanceState",
    "InstanceStats",
    "KeyShareStats",
    "KeyUsage",
    "LoginProgress",
    "PoolStats",
    "Probes",
    "RecentFailures",
    "StatsReport",
    "UsageReport",
    "UsageRow",
)


class InstanceState(enum.StrEnum):
    """An instance's state as operators see it: the process's own state with the login and cool-down folded in."""

    STARTING = "starting"
    LOGIN_REQUIRED = "login_required"
    LOGGING_IN = "logging_in"
    LOGIN_FAILED = "login_failed"
    """The login retries are spent; the next attempt waits for an admin (docs/login.md)."""
    READY = "ready"
    COOLING_DOWN = "cooling_down"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    STOPPED = "stopped"


class _Doc(msgspec.Struct, kw_only=True):
    pass


class Probes(_Doc):
    total: int = 0
    missed_total: int = 0
    busy_total: int = 0
    """Probes left unanswered while Lingma went on answering other work: busy, not hung."""
    missed_in_a_row: int = 0
    last_answer_at: float | None = None
    """Unix time of the last answered ``auth/status`` probe."""


class LoginProgress(_Doc):
    """The current or last login attempt of one instance."""

    state: Literal["idle", "running", "succeeded", "failed"] = "idle"
    attempts: int = 0
    max_attempts: int = 0
    step: str = ""
    last_error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class InstanceStats(_Doc):
    id: str
    state: InstanceState
    pid: int = 0
    in_flight: int = 0
    served_total: int = 0
    restarts_total: int = 0
    unhealthy_total: int = 0
    probes: Probes = msgspec.field(default_factory=Probes)
    auth: dict[str, Any] = msgspec.field(default_factory=dict)
    """What Lingma's ``auth/status`` reported, as it sent it, without its tokens (docs/lingma-protocol.md §4.1)."""
    auto_login: LoginProgress = msgspec.field(default_factory=LoginProgress)
    reason: str | None = None
    """Why the instance is not serving (None when ready)."""
    cooldown_until: float | None = None
    """Unix time the cool-down ends."""
    last_error: str | None = None


class PoolStats(_Doc):
    instances: list[InstanceStats] = msgspec.field(default_factory=list)


class Backpressure(_Doc):
    in_flight: int = 0
    in_flight_max: int = 0
    limit: int = 0
    queued: int = 0
    rejected_total: int = 0


class KeyShareStats(_Doc):
    """The per-key cap (``GATEWAY_KEY_MAX_IN_FLIGHT``, 0: none), each map by API key name."""

    limit: int = 0
    in_flight: dict[str, int] = msgspec.field(default_factory=dict)
    in_flight_max: dict[str, int] = msgspec.field(default_factory=dict)
    rejected_total: dict[str, int] = msgspec.field(default_factory=dict)


class UsageRow(_Doc):
    turns: int = 0
    failed_turns: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


class KeyUsage(UsageRow):
    models: dict[str, UsageRow] = msgspec.field(default_factory=dict)


class UsageReport(_Doc):
    """The ``/internal/usage`` document: per API key name (with its models), per model, and in total."""

    since: float = 0.0
    keys: dict[str, KeyUsage] = msgspec.field(default_factory=dict)
    models: dict[str, UsageRow] = msgspec.field(default_factory=dict)
    total: UsageRow = msgspec.field(default_factory=UsageRow)


class RecentFailures(_Doc):
    window_s: float = 0.0
    by_kind: dict[str, int] = msgspec.field(default_factory=dict)
    """Failed turns per error code within the window."""
    last_kind: str | None = None
    last_age_s: float | None = None


class StatsReport(_Doc):
    """The whole stats object; counters start from zero with each sidecar."""

    version: int = 1
    requests: dict[str, int] = msgspec.field(default_factory=dict)
    pool: PoolStats = msgspec.field(default_factory=PoolStats)
    session_cache: dict[str, int] = msgspec.field(default_factory=dict)
    tools: dict[str, int] = msgspec.field(default_factory=dict)
    recent_failures: RecentFailures = msgspec.field(default_factory=RecentFailures)
    backpressure: Backpressure = msgspec.field(default_factory=Backpressure)
    key_share: KeyShareStats = msgspec.field(default_factory=KeyShareStats)
    usage: UsageReport = msgspec.field(default_factory=UsageReport)
