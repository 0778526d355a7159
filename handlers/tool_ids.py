"""How the OpenAI dialects name a tool call: ``call_`` and the sidecar's id, and back again.

Chat Completions and Responses share the form, so a call id made by one reads back in the other.
"""

from __future__ import annotations

__all__ = ("CALL_PREFIX", "call_id", "internal_id")

CALL_PREFIX = "call_"


def call_id(internal: str) -> str:
    """The id a client sees for the sidecar's call ``internal``."""
    return CALL_PREFIX + internal


def internal_id(given: str) -> str:
    """The sidecar's id inside a call id a client echoes back (one without the prefix is taken as it is)."""
    return given.removeprefix(CALL_PREFIX)
