"""One turn against a Lingma instance, across its attempts: the stale-session retry and the forced-choice retry.

Lingma's pushes become protocol events here: think text becomes reasoning, visible text goes through the
tool-call filter, recognised calls get ids. On a clean finish the new session state is stored for reuse.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from common.conversation import Conversation, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import QuotaExhaustedError, RateLimitedError, UpstreamError
from common.protocol import Event, Finished, ReasoningDelta, TextDelta, ToolCall, Usage
from sidecar.lingma.errors import StaleSessionError
from sidecar.lingma.events import AnswerText, AskAccepted, AskFinished, SessionAssigned, ThinkText, ToolInvoked
from sidecar.lingma.instance import LingmaInstance
from sidecar.offload import Offload
from sidecar.pool import Pool
from sidecar.prompt import FORCED_CALL_NUDGE, RenderedPrompt
from sidecar.session_cache import SessionCache, SessionState
from sidecar.session_key import conversation_key, merge_assistant_runs, reply_message
from sidecar.stats import StatsBook
from sidecar.tokens import count_tokens
from sidecar.tools.calls import offered_tools
from sidecar.tools.stream import CallOut, TextOut, ToolCallFilter

__all__ = ("Attempt", "RunningTurn", "TurnRunner")

log = logging.getLogger("lingma_gateway.turn")


@dataclass
class Attempt:
    """What one ``chat/ask`` produced."""

    session_id: str | None = None
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)


@dataclass
class RunningTurn:
    """One request's turn across its attempts (a stale-session retry, a forced-choice retry)."""

    conv: Conversation
    prompt: RenderedPrompt
    tools: list[ToolSpec]
    choice: ToolChoice
    full_tokens: int
    reply_tokens: int
    """Tokens of the new turn alone: what a reused session is sent; the rest of the prompt counts as cached."""
    claim: SessionState | None
    question: str
    session_id: str | None
    is_reply: bool
    claim_spent: bool = False
    """Lingma accepted an ask in the claimed session, so its state moved on: never give the claim back."""
    content_sent: bool = False
    stale_retried: bool = False
    forced_retried: bool = False
    sent_bytes: int = 0
    calls_index: int = 0

    @property
    def forced(self) -> bool:
        return self.choice.mode in ("required", "named")

    @property
    def reused(self) -> bool:
        """Whether the answer continues the claimed session with the client's own history."""
        return self.claim is not None and not self.stale_retried

    def go_fresh(self) -> None:
        """Send the whole transcript into a new session from now on."""
        self.session_id, self.is_reply, self.question = None, False, self.prompt.full

    @property
    def cached_tokens(self) -> int:
        return max(0, self.full_tokens - self.reply_tokens) if self.reused else 0


class TurnRunner:
    """Runs turns on instances of one pool, counting into one stats book and storing into one cache."""

    def __init__(self, pool: Pool, cache: SessionCache, book: StatsBook, offload: Offload) -> None:
        self.pool = pool
        self.cache = cache
        self.book = book
        self.offload = offload

    async def run(
        self, turn: RunningTurn, inst: LingmaInstance, key: str, mode: Literal["chat", "agent"]
    ) -> AsyncIterator[Event]:
        offered = offered_tools(turn.tools)
        while True:
            attempt = Attempt(session_id=turn.session_id)
            filt = ToolCallFilter(offered, hold_all=turn.forced) if offered else None
            turn.sent_bytes += len(turn.question.encode())
            try:
                async for event in self._attempt(turn, attempt, filt, inst, key, mode):
                    yield event
            except (QuotaExhaustedError, RateLimitedError) as exc:
                self.pool.cool_down(inst, exc.retry_after_s, exc.message)
                raise
            except StaleSessionError:
                turn.claim_spent = True  # Lingma no longer holds that session: never give its entry back
                if turn.content_sent or turn.stale_retried or not turn.is_reply:
                    raise
                turn.stale_retried = True
                self.book.session_cache["stale_retries"] += 1
                turn.go_fresh()
                continue
            if filt is None:
                break
            outs = filt.finish()
            self._count_tools(filt)
            if turn.forced and not any(isinstance(o, CallOut) for o in outs):
                self._forced_retry(turn, attempt)
                continue
            for out in outs:
                emitted = self._emit(out, attempt, turn)
                if emitted is not None:
                    yield emitted
            break
        yield await self._finish(turn, inst, attempt)

    async def _attempt(
        self,
        turn: RunningTurn,
        attempt: Attempt,
        filt: ToolCallFilter | None,
        inst: LingmaInstance,
        key: str,
        mode: Literal["chat", "agent"],
    ) -> AsyncIterator[Event]:
        stream = inst.ask(
            question=turn.question, model_key=key, session_id=turn.session_id, is_reply=turn.is_reply, mode=mode
        )
        try:
            async for ev in stream:
                if isinstance(ev, (AskAccepted, SessionAssigned, ToolInvoked, AskFinished)):
                    self._note(ev, turn, attempt)
                elif isinstance(ev, ThinkText) and ev.text:
                    attempt.reasoning.append(ev.text)
                    turn.content_sent = True
                    yield ReasoningDelta(text=ev.text)
                elif isinstance(ev, AnswerText) and ev.text:
                    for out in filt.feed(ev.text) if filt else [TextOut(ev.text)]:
                        emitted = self._emit(out, attempt, turn)
                        if emitted is not None:
                            yield emitted
        finally:
            await stream.aclose()

    def _note(
        self, ev: AskAccepted | SessionAssigned | ToolInvoked | AskFinished, turn: RunningTurn, attempt: Attempt
    ) -> None:
        """Bookkeeping events of a turn: acceptance, the session id, Lingma's own tool requests."""
        if isinstance(ev, AskAccepted):
            if turn.is_reply and turn.claim is not None and turn.session_id == turn.claim.session_id:
                turn.claim_spent = True
        elif isinstance(ev, ToolInvoked):
            self.book.tools["lingma_tool_invokes"] += 1
        else:
            attempt.session_id = ev.session_id or attempt.session_id

    def _forced_retry(self, turn: RunningTurn, attempt: Attempt) -> None:
        """A forced tool choice answered in prose: ask once more in the same session, then give up."""
        if turn.forced_retried:
            raise UpstreamError(
                "the model answered without calling a tool although the request's tool_choice required one, twice"
            )
        turn.forced_retried = True
        self.book.tools["forced_retries"] += 1
        turn.session_id, turn.is_reply, turn.question = attempt.session_id, True, FORCED_CALL_NUDGE

    async def _finish(self, turn: RunningTurn, inst: LingmaInstance, attempt: Attempt) -> Finished:
        turn.claim_spent = True
        full_bytes = len(turn.prompt.full.encode())
        self.book.session_cache["upstream_bytes_sent"] += turn.sent_bytes
        self.book.session_cache["upstream_bytes_saved"] += max(0, full_bytes - turn.sent_bytes)
        text = "".join(attempt.text)
        reasoning_tokens = count_tokens("".join(attempt.reasoning))
        if not turn.forced_retried:
            # After a forced retry the session also holds the prose reply and the nudge, which the client never
            # saw: storing it would later send a turn into a session whose history differs from the client's.
            await self._remember(turn, inst, attempt, text)
        call_text = "".join(c.name + c.arguments for c in attempt.calls)
        return Finished(
            reason="tool_calls" if attempt.calls else "stop",
            usage=Usage(
                input_tokens=turn.full_tokens,
                cached_input_tokens=turn.cached_tokens,
                output_tokens=count_tokens(text) + reasoning_tokens + count_tokens(call_text),
                reasoning_tokens=reasoning_tokens,
            ),
        )

    def _emit(self, out: TextOut | CallOut, attempt: Attempt, turn: RunningTurn) -> Event | None:
        if isinstance(out, TextOut):
            if not out.text:
                return None
            attempt.text.append(out.text)
            turn.content_sent = True
            return TextDelta(text=out.text)
        call = out.call
        call_id = uuid.uuid4().hex[:24]
        attempt.calls.append(ToolCallRecord(id=call_id, name=call.name, arguments=call.arguments, kind=call.kind))
        turn.content_sent = True
        index, turn.calls_index = turn.calls_index, turn.calls_index + 1
        return ToolCall(index=index, id=call_id, name=call.name, kind=call.kind, arguments=call.arguments)

    def _count_tools(self, filt: ToolCallFilter) -> None:
        for name, count in filt.recognised.items():
            if count:
                self.book.tools[f"recognised_{name}"] += count
        self.book.tools["parse_failures"] += filt.parse_failures
        self.book.tools["leaked_as_text"] += filt.leaked_as_text

    async def _remember(self, turn: RunningTurn, inst: LingmaInstance, attempt: Attempt, text: str) -> None:
        if not attempt.session_id:
            return
        conv = turn.conv
        messages = merge_assistant_runs([*conv.messages, reply_message(text, attempt.calls)])
        key = await self.offload.run(conv, lambda: conversation_key(conv.api_key_fingerprint, turn.tools, messages))
        state = SessionState(
            key=key,
            session_id=attempt.session_id,
            instance=inst.id,
            messages=messages,
        )
        try:
            await self.cache.put(state, response_id=conv.response_id)
        except Exception:
            log.exception("could not store the session state; the next turn will start fresh")
