"""A stand-in for one Lingma instance, for unit tests of the pool and the turn runner.

The real instance needs a process (the simulator makes that an integration test); this one plays back
scripted replies to ``ask`` and records what it was asked, so a test can check what the gateway sent
(fresh or reply, which session, which question) and what came of each reply.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UpstreamUnavailableError
from sidecar.lingma.events import AnswerText, AskAccepted, AskFinished, SessionAssigned, UpstreamEvent

__all__ = ("Ask", "FakeInstance", "answer")

Reply = Sequence[UpstreamEvent | BaseException]
"""Events to yield in order; an exception in the list is raised at that point."""

MODELS = {"chat": [{"key": "qwen3-coder", "displayName": "Qwen3 Coder", "isDefault": True}]}


def answer(text: str, session_id: str = "sess-1", *, accepted: bool = True) -> list[UpstreamEvent | BaseException]:
    """A clean reply: accepted, its session, the text, finished."""
    head: list[UpstreamEvent | BaseException] = [AskAccepted()] if accepted else []
    return [*head, SessionAssigned(session_id), AnswerText(text), AskFinished(session_id, text, 200, "stop")]


@dataclass
class Ask:
    question: str
    model_key: str
    session_id: str | None
    is_reply: bool
    mode: str


@dataclass
class FakeProber:
    probes_total: int = 0
    missed_total: int = 0
    busy_total: int = 0
    misses: int = 0
    last_answer_at: float | None = None

    def poke(self) -> None:
        self.probes_total += 1


@dataclass
class FakeInstance:
    id: str = "inst-0"
    state: str = "ready"
    replies: deque[Reply] = field(default_factory=deque)
    models: dict[str, Any] = field(default_factory=lambda: dict(MODELS))
    probe_ok: bool = True
    asks: list[Ask] = field(default_factory=list)
    probes: int = 0
    model_queries: int = 0
    served_total: int = 0
    restarts_total: int = 0
    last_error: str | None = None
    pid: int | None = None
    in_flight: int = 0
    work_dir: Path = Path("/nonexistent/fake-lingma")
    unhealthy_total: int = 0
    auth: dict[str, Any] = field(default_factory=dict)
    prober: FakeProber = field(default_factory=FakeProber)
    on_state: Any = None

    def script(self, replies: Iterable[Reply]) -> FakeInstance:
        self.replies.extend(replies)
        return self

    async def ask(
        self,
        *,
        question: str,
        model_key: str,
        session_id: str | None,
        is_reply: bool,
        mode: str,
        request_id: str | None = None,
    ) -> AsyncGenerator[UpstreamEvent, None]:
        self.asks.append(Ask(question, model_key, session_id, is_reply, mode))
        reply = self.replies.popleft() if self.replies else answer(f"reply {len(self.asks)}")
        self.in_flight += 1
        try:
            for item in reply:
                if isinstance(item, BaseException):
                    raise item
                yield item
            self.served_total += 1
        finally:
            self.in_flight -= 1

    async def auth_status(self) -> dict[str, Any]:
        self.probes += 1
        if not self.probe_ok:
            raise UpstreamUnavailableError(f"Lingma instance {self.id} does not answer")
        return {"id": "user-1"}

    async def query_models(self) -> dict[str, Any]:
        self.model_queries += 1
        return self.models

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.state = "stopped"

    async def wait_ready(self, timeout: float) -> bool:
        return self.state == "ready"
