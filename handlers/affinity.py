"""The conversation's affinity key from request headers, the same rule for every dialect.

``x-session-affinity`` is the one header any client (or a proxy in front) can set for all three dialects;
each client's own session header still works: Claude Code's ``x-claude-code-session-id``, Codex's
``session-id`` (also ``session_id``) and ``thread-id``. The order matches the ingress hash key
(``docs/deployment.md``), so the cell an ingress picks and the instance a cell picks follow the same header.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ("AFFINITY_HEADERS", "affinity_of")

AFFINITY_HEADERS = ("x-session-affinity", "x-claude-code-session-id", "session-id", "session_id", "thread-id")


def affinity_of(headers: Mapping[str, str]) -> str | None:
    """The first non-empty affinity header, or None (the dialect then falls back to its body fields)."""
    for name in AFFINITY_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None
