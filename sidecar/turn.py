"""One turn against a Lingma instance, across its attempts: the stale-session retry and the forced-choice retry.

A turn has a frozen ``TurnPlan`` (the prompt, its token counts, the tools) and one ``Attempt`` per
``chat/ask``. Lingma's pushes become protocol events here: think text becomes reasoning, visible text goes
through the tool-call filter, recognised calls get ids. The turn spends its session claim once Lingma
accepts an ask in the claimed session (or says the session is gone, or leaves the ask unanswered); on a
clean finish the new session state, and the response's delta, are stored for reuse.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from common.conversation import Conversation, Message, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import InternalError, QuotaExhaustedError, RateLimitedError, UpstreamError
from common.protocol import Event, Finished, ReasoningDelta, TextDelta, ToolCall, Usage
from common.settings import AskMode
from sidecar.lingma.errors import AskUnansweredError, StaleSessionError
from sidecar.lingma.events import AnswerText, AskAccepted, AskFinished, SessionAssigned, ThinkText, ToolInvoked
from sidecar.lingma.instance import LingmaInstance
from sidecar.offload import Offload
from sidecar.pool import Pool
from sidecar.prompt import FORCED_CALL_NUDGE, RenderedPrompt
from sidecar.session_cache import Claim, ResponseDelta, SessionCache, SessionState
from sidecar.session_key import KeyChain, merge_assistant_runs, reply_message
from sidecar.stats import StatsBook
from sidecar.tokens import count_tokens
from sidecar.tools.calls import offered_tools
from sidecar.tools.stream import CallOut, TextOut, ToolCallFilter

__all__ = ("Attempt", "TurnPlan", "TurnRunner", "reused_session")

log = logging.getLogger("lingma_gateway.turn")

_RESPONSE_COMMIT_WAIT = 10.0
"""How long a Responses turn waits for its delta's commit before its terminal goes out anyway."""


@dataclass(frozen=True)
class TurnPlan:
    """What a turn asks, fixed before its first attempt."""

    conv: Conversation
    """The request's conversation, with what a ``previous_response_id`` stands for put in front."""
    new_messages: list[Message]
    """The request's own messages (no instructions): with the reply, what a stored response adds."""
    prompt: RenderedPrompt
    chain: KeyChain
    """The session keys of the conversation: its history's was claimed, its extension by the reply is stored."""
    tools: list[ToolSpec]
    choice: ToolChoice
    full_tokens: int
    reply_tokens: int
    """Tokens of the new turn alone: what a reused session is sent; the rest of the prompt counts as cached."""

    @property
    def forced(self) -> bool:
        return self.choice.mode in ("required", "named")


@dataclass
class Attempt:
    """One ``chat/ask``: what was asked in which session, and what came back."""

    kind: Literal["first", "fresh_retry", "forced_retry"]
    question: str
    session_id: str | None
    """The session asked in (None: a new one); then the one Lingma answered in."""
    is_reply: bool
    content_sent: bool = False
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)


def reused_session(claim: Claim) -> SessionState | None:
    """The claimed session a turn continues: none once the claim is spent (its session moved on or is gone)."""
    return claim.state if not claim.spent else None


def cached_tokens(plan: TurnPlan, reused: bool) -> int:
    return max(0, plan.full_tokens - plan.reply_tokens) if reused else 0


class TurnRunner:
    """Runs turns on instances of one pool, counting into one stats book and storing into one cache."""

    def __init__(self, pool: Pool, cache: SessionCache, book: StatsBook, offload: Offload) -> None:
        self.pool = pool
        self.cache = cache
        self.book = book
        self.offload = offload

    async def run(
        self, plan: TurnPlan, claim: Claim, inst: LingmaInstance, key: str, mode: AskMode
    ) -> AsyncIterator[Event]:
        offered = offered_tools(plan.tools)
        reuse = reused_session(claim)
        attempt = Attempt(
            "first",
            question=plan.prompt.reply if reuse else plan.prompt.full,
            session_id=reuse.session_id if reuse else None,
            is_reply=reuse is not None,
        )
        attempts: list[Attempt] = []
        while True:
            attempts.append(attempt)
            filt = ToolCallFilter(offered, hold_all=plan.forced) if offered else None
            try:
                async for event in self._attempt(attempt, claim, filt, inst, key, mode):
                    yield event
            except (QuotaExhaustedError, RateLimitedError) as exc:
                self.pool.cool_down(inst, exc.retry_after_s, exc.message)
                raise
            except StaleSessionError:
                claim.spend()  # Lingma no longer holds that session: never give its entry back
                if any(a.content_sent or a.kind == "fresh_retry" for a in attempts) or not attempt.is_reply:
                    raise
                self.book.session_cache["stale_retries"] += 1
                attempt = Attempt("fresh_retry", question=plan.prompt.full, session_id=None, is_reply=False)
                continue
            if filt is None:
                break
            outs = filt.finish()
            self._count_tools(filt)
            if plan.forced and not any(isinstance(o, CallOut) for o in outs):
                attempt = self._forced_retry(attempts)
                continue
            for out in outs:
                emitted = self._emit(out, attempt)
                if emitted is not None:
                    yield emitted
            break
        yield await self._finish(plan, attempts, inst)

    async def _attempt(
        self,
        attempt: Attempt,
        claim: Claim,
        filt: ToolCallFilter | None,
        inst: LingmaInstance,
        key: str,
        mode: AskMode,
    ) -> AsyncIterator[Event]:
        stream = inst.ask(
            question=attempt.question,
            model_key=key,
            session_id=attempt.session_id,
            is_reply=attempt.is_reply,
            mode=mode,
        )
        try:
            async for ev in stream:
                if isinstance(ev, ThinkText) and ev.text:
                    attempt.reasoning.append(ev.text)
                    attempt.content_sent = True
                    yield ReasoningDelta(text=ev.text)
                elif isinstance(ev, AnswerText) and ev.text:
                    for out in filt.feed(ev.text) if filt else [TextOut(ev.text)]:
                        emitted = self._emit(out, attempt)
                        if emitted is not None:
                            yield emitted
                else:
                    self._note(ev, attempt, claim)
        except AskUnansweredError:
            if attempt.is_reply:  # Lingma may have taken the question: that session's history moved on
                claim.spend()
            raise
        finally:
            await stream.aclose()

    def _note(self, ev: object, attempt: Attempt, claim: Claim) -> None:
        """What an upstream event that is not content changes: the claim, the session id, the counters."""
        if isinstance(ev, AskAccepted):
            reuse = reused_session(claim)
            if attempt.is_reply and reuse is not None and attempt.session_id == reuse.session_id:
                claim.spend()  # Lingma took a turn in the claimed session: its state moved on
        elif isinstance(ev, ToolInvoked):
            self.book.tools["lingma_tool_invokes"] += 1
        elif isinstance(ev, (SessionAssigned, AskFinished)):
            attempt.session_id = ev.session_id or attempt.session_id

    def _forced_retry(self, attempts: list[Attempt]) -> Attempt:
        """A forced tool choice answered in prose: ask once more in the same session, then give up."""
        if any(a.kind == "forced_retry" for a in attempts):
            raise UpstreamError(
                "the model answered without calling a tool although the request's tool_choice required one, twice"
            )
        self.book.tools["forced_retries"] += 1
        return Attempt("forced_retry", question=FORCED_CALL_NUDGE, session_id=attempts[-1].session_id, is_reply=True)

    async def _finish(self, plan: TurnPlan, attempts: list[Attempt], inst: LingmaInstance) -> Finished:
        last = attempts[-1]
        sent_bytes = sum(len(a.question.encode()) for a in attempts)
        self.book.session_cache["upstream_bytes_sent"] += sent_bytes
        self.book.session_cache["upstream_bytes_saved"] += max(0, len(plan.prompt.full.encode()) - sent_bytes)
        text = "".join(last.text)
        reasoning_tokens = count_tokens("".join(last.reasoning))
        reused = attempts[0].is_reply and all(a.kind != "fresh_retry" for a in attempts)
        await self._remember(plan, inst, last, text, store_session=all(a.kind != "forced_retry" for a in attempts))
        call_text = "".join(c.name + c.arguments for c in last.calls)
        return Finished(
            reason="tool_calls" if last.calls else "stop",
            usage=Usage(
                input_tokens=plan.full_tokens,
                cached_input_tokens=cached_tokens(plan, reused),
                output_tokens=count_tokens(text) + reasoning_tokens + count_tokens(call_text),
                reasoning_tokens=reasoning_tokens,
            ),
        )

    def _emit(self, out: TextOut | CallOut, attempt: Attempt) -> Event | None:
        if isinstance(out, TextOut):
            if not out.text:
                return None
            attempt.text.append(out.text)
            attempt.content_sent = True
            return TextDelta(text=out.text)
        call = out.call
        call_id = uuid.uuid4().hex[:24]
        index = len(attempt.calls)
        attempt.calls.append(ToolCallRecord(id=call_id, name=call.name, arguments=call.arguments, kind=call.kind))
        attempt.content_sent = True
        return ToolCall(index=index, id=call_id, name=call.name, kind=call.kind, arguments=call.arguments)

    def _count_tools(self, filt: ToolCallFilter) -> None:
        for name, count in filt.recognised.items():
            if count:
                self.book.tools[f"recognised_{name}"] += count
        self.book.tools["parse_failures"] += filt.parse_failures
        self.book.tools["leaked_as_text"] += filt.leaked_as_text

    async def _remember(
        self, plan: TurnPlan, inst: LingmaInstance, attempt: Attempt, text: str, *, store_session: bool
    ) -> None:
        """Store the session for reuse and the response's delta, written behind; the delta is awaited.

        The session state may be lost to a kill -9 (the next turn starts fresh), but a response id cannot:
        its client sends only what follows it, so the turn's terminal waits for the commit that holds it.

        After a forced retry the session also holds the prose reply and the nudge, which the client never saw:
        storing it would later send a turn into a session whose history differs from the client's.
        """
        conv = plan.conv
        reply = reply_message(text, attempt.calls)
        response = None
        if conv.response_id:
            delta = merge_assistant_runs([*plan.new_messages, reply])
            response = ResponseDelta(id=conv.response_id, parent=conv.previous_response_id, messages=delta)
        state = None
        if store_session and attempt.session_id:
            key = await self.offload.run(conv, lambda: plan.chain.extended(reply).key())
            state = SessionState(key=key, session_id=attempt.session_id, instance=inst.id)
        try:
            committed = self.cache.store(state, response)
        except Exception:
            log.exception("could not store the session state; the next turn will start fresh")
            return
        if committed is not None:  # a response id the client is about to get must already be on disk
            try:
                saved = await asyncio.wait_for(asyncio.shield(committed), _RESPONSE_COMMIT_WAIT)
            except TimeoutError:  # still pending, so still found: only a kill before it commits would lose it
                log.warning(
                    "the session cache took over %.0f s to commit response %s", _RESPONSE_COMMIT_WAIT, conv.response_id
                )
                return
            if not saved:  # never hand out an id that cannot be continued
                raise InternalError(
                    "the response could not be saved, so it could not be continued; send the request again"
                )
