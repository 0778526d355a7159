"""Small helpers shared by the simulator tests: draining a turn and recomputing the default reply."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

from sidecar.lingma.events import AnswerText, AskFinished, ThinkText, UpstreamEvent


async def collect(turn: AsyncIterator[UpstreamEvent]) -> list[UpstreamEvent]:
    return [event async for event in turn]


def answer_of(events: list[UpstreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, AnswerText))


def think_of(events: list[UpstreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ThinkText))


def finished(events: list[UpstreamEvent]) -> AskFinished:
    last = events[-1]
    assert isinstance(last, AskFinished), events
    return last


def expected_default_reply(session_id: str, questions: list[str]) -> str:
    """The simulator's default reply (docs/lingma-protocol.md §10.4), recomputed here, not imported from it."""
    canonical = json.dumps(questions, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha1(canonical.encode("utf-8")).hexdigest()
    newest = next((line.strip() for line in reversed(questions[-1].splitlines()) if line.strip()), "")
    return (
        f"sim: turn {len(questions)} of session {session_id[:8]}; history sha1 {digest[:12]}; you said: {newest[:60]}"
    )
