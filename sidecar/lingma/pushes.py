"""Tracking the pushes of one ``chat/ask``: which belong to it, what text they add, and when it is over.

Pure (no I/O): ``sidecar.lingma.ask`` feeds it the pushes routed to its ``requestId`` and yields what comes
back. A failing ``chat/finish`` raises the classified error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sidecar.lingma.errors import classify_finish, finish_status
from sidecar.lingma.events import AnswerText, AskFinished, SessionAssigned, ThinkText, ToolInvoked, UpstreamEvent
from sidecar.lingma.think import ThinkSplitter

__all__ = ("PushTracker",)

log = logging.getLogger(__name__)


class PushTracker:
    """What the pushes of one ``chat/ask`` have said so far."""

    def __init__(self, *, request_id: str, session_id: str | None, instance_id: str) -> None:
        self.request_id = request_id
        self.session_id = session_id or ""
        self.instance_id = instance_id
        self.finished = False
        self.raw_answer = ""
        """The answer text as Lingma sent it, think markup included."""
        self._announced = False
        self._splitter = ThinkSplitter()

    def on_push(self, method: str, params: Mapping[str, Any], *, alone: bool) -> list[UpstreamEvent]:
        """Events for one push; ``alone`` says whether this is the only turn in flight on the connection."""
        request_id = params.get("requestId")
        if not request_id:
            # Some builds send session/title/update without a requestId: it is ours only if nobody
            # else could own it, or if it names the session we already hold.
            owned = alone or (bool(self.session_id) and params.get("sessionId") == self.session_id)
            return self._learn_session(params) if method == "session/title/update" and owned else []
        if request_id != self.request_id or self.finished:
            return []
        events = self._learn_session(params)
        if method == "chat/answer":
            events += self._on_answer(params)
        elif method == "chat/finish":
            events += self._on_finish(params)
        elif method == "tool/invoke":
            events.append(ToolInvoked(str(params.get("name") or ""), str(params.get("toolCallId") or "")))
        return events

    def _learn_session(self, params: Mapping[str, Any]) -> list[UpstreamEvent]:
        session_id = params.get("sessionId")
        if self._announced or not isinstance(session_id, str) or not session_id:
            return []
        self._announced = True
        self.session_id = session_id
        return [SessionAssigned(session_id)]

    def _on_answer(self, params: Mapping[str, Any]) -> list[UpstreamEvent]:
        text = params.get("text")
        if not isinstance(text, str) or not text:
            return []
        if params.get("overwrite") is True:
            return self._advance_to(text, "an overwrite chunk")
        return self._feed(text)

    def _on_finish(self, params: Mapping[str, Any]) -> list[UpstreamEvent]:
        self.finished = True
        status = finish_status(params)
        if status != 200:
            raise classify_finish(params, instance_id=self.instance_id)
        events: list[UpstreamEvent] = []
        full = params.get("fullAnswer")
        if isinstance(full, str) and full:
            # fullAnswer is often empty; when it is not, it may hold text the chunks never carried.
            events += self._advance_to(full, "fullAnswer")
        events += self._splitter.finish()
        reason = str(params.get("reason") or "success")
        events.append(AskFinished(self.session_id, self.raw_answer, status, reason))
        return events

    def _advance_to(self, full: str, what: str) -> list[UpstreamEvent]:
        """Accept a whole-answer text only where it extends what was already sent (no retractions)."""
        if full.startswith(self.raw_answer):
            return self._feed(full[len(self.raw_answer) :])
        if full != self.raw_answer:
            log.info("ignoring %s that rewrites text already sent (request %s)", what, self.request_id)
        return []

    def _feed(self, text: str) -> list[UpstreamEvent]:
        if not text:
            return []
        self.raw_answer += text
        pieces: list[AnswerText | ThinkText] = self._splitter.feed(text)
        return list(pieces)
