"""What one Lingma turn yields to its caller, in order: accepted, session, text and reasoning, finished."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = (
    "AnswerText",
    "AskAccepted",
    "AskFinished",
    "SessionAssigned",
    "ThinkText",
    "ToolInvoked",
    "UpstreamEvent",
)


@dataclass(frozen=True, slots=True)
class AskAccepted:
    """``chat/ask`` came back with ``success: true``: from here on a claim is spent (docs/architecture.md §5.2)."""


@dataclass(frozen=True, slots=True)
class SessionAssigned:
    """The first non-empty ``sessionId`` Lingma reported for this turn."""

    session_id: str


@dataclass(frozen=True, slots=True)
class AnswerText:
    """Visible answer text, with think markup removed."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkText:
    """Reasoning text that Lingma wrapped in think markers."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolInvoked:
    """Lingma's agent asked for a built-in IDE tool; it was answered "unavailable"."""

    name: str
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class AskFinished:
    """``chat/finish`` with status 200; ``full_answer`` is the raw answer, markup included."""

    session_id: str
    full_answer: str
    status_code: int
    reason: str


UpstreamEvent = AskAccepted | SessionAssigned | AnswerText | ThinkText | ToolInvoked | AskFinished
