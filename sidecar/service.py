"""The Lingma backend: one turn from a normalised conversation to protocol events.

Steps (spec §4): expand ``previous_response_id``; render the prompt; claim a reusable session; pick an
instance; resolve the model; ask Lingma; split think text, visible text and tool calls; store the new
session state on a clean finish. A stale session is retried fresh once, before any content went out; a
forced tool choice answered in prose is asked again once in the same session.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from common.conversation import Conversation, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import (
    BadRequestError,
    PreviousResponseNotFoundError,
    QuotaExhaustedError,
    RateLimitedError,
    UpstreamError,
)
from common.protocol import (
    Complete,
    Event,
    Finished,
    ModelInfo,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    Usage,
)
from common.settings import Settings
from sidecar.lingma.errors import StaleSessionError
from sidecar.lingma.events import AnswerText, AskAccepted, AskFinished, SessionAssigned, ThinkText, ToolInvoked
from sidecar.lingma.instance import LingmaInstance
from sidecar.lingma.models import resolve_model
from sidecar.pool import Pool
from sidecar.prompt import FORCED_CALL_NUDGE, RenderedPrompt, render
from sidecar.session_cache import SessionCache, SessionState
from sidecar.session_key import conversation_key, merge_assistant_runs, reply_message
from sidecar.stats import StatsBook
from sidecar.tokens import count_tokens
from sidecar.tools.calls import offered_tools
from sidecar.tools.stream import CallOut, TextOut, ToolCallFilter

__all__ = ("LingmaBackend",)

log = logging.getLogger("lingma_gateway.service")

AGENT_MODELS = frozenset({"lingma-agent", "agent"})


@dataclass
class _Attempt:
    """What one ``chat/ask`` produced."""

    session_id: str | None = None
    accepted: bool = False
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)


@dataclass
class _Turn:
    """One request's turn across its attempts (a stale-session retry, a forced-choice retry)."""

    conv: Conversation
    prompt: RenderedPrompt
    tools: list[ToolSpec]
    choice: ToolChoice
    full_tokens: int
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


class LingmaBackend:
    def __init__(self, settings: Settings, stats: StatsBook) -> None:
        self.settings = settings
        self.book = stats
        self.pool = Pool(settings)
        self.cache = SessionCache(
            settings.data_dir / "session-cache.sqlite3",
            ttl=settings.session_cache_ttl_sec,
            max_entries=settings.session_cache_max_entries,
            counters=stats.session_cache,
        )

    async def start(self) -> None:
        await self.cache.open()
        await self.pool.start()

    async def stop(self) -> None:
        await self.pool.stop()
        await self.cache.close()

    # -- the conversation ---------------------------------------------------------------------------

    def _tools(self, conv: Conversation) -> tuple[list[ToolSpec], ToolChoice]:
        if not self.settings.tool_forward_enabled or conv.tool_choice.mode == "none":
            return [], ToolChoice(mode="none")
        allow = self.settings.tool_allowlist
        tools = [t for t in conv.tools if not allow or t.name in allow]
        choice = conv.tool_choice
        if choice.mode == "named" and choice.name not in {t.name for t in tools}:
            raise BadRequestError(
                f"tool_choice names {choice.name!r}, which this gateway does not offer (TOOL_ALLOWLIST)",
                param="tool_choice",
            )
        return tools, choice if tools else ToolChoice(mode="none")

    async def _expand(self, conv: Conversation) -> Conversation:
        """Prepend what a ``previous_response_id`` stands for, so the turn never runs without its history."""
        if not conv.previous_response_id:
            return conv
        earlier = await self.cache.response(conv.previous_response_id)
        if earlier is None:
            raise PreviousResponseNotFoundError(conv.previous_response_id)
        new = [m for m in conv.messages if m.role not in ("system", "developer")]
        instructions = [m for m in conv.messages if m.role in ("system", "developer")]
        kept = [m for m in earlier if m.role not in ("system", "developer")]
        return msgspec.structs.replace(conv, messages=[*instructions, *kept, *new])

    async def count_tokens(self, conversation: Conversation) -> int:
        conv = await self._expand(conversation)
        tools, choice = self._tools(conv)
        return count_tokens(render(conv, tools=tools, choice=choice).full)

    # -- models ---------------------------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        models = await self.pool.all_models()
        agent = ModelInfo(key="lingma-agent", display_name="Lingma agent mode")
        return [*models, agent] if models else models

    async def raw_models(self, instance: str | None) -> str:
        inst = self.pool.get(instance) if instance else next(iter(self.pool.ready()), None)
        if inst is None:
            raise self.pool._no_capacity()
        return json.dumps(await inst.query_models())

    async def _resolve(self, inst: LingmaInstance, requested: str) -> tuple[str, Literal["chat", "agent"]]:
        mode: Literal["chat", "agent"] = self.settings.default_ask_mode
        if requested.strip().lower() in AGENT_MODELS:
            mode, requested = "agent", ""
        models = await self.pool.models_of(inst)
        key, _exact = resolve_model(
            requested,
            models,
            default_key=self.settings.default_model or None,
            aliases=dict(self.settings.model_aliases),
        )
        return key, mode

    # -- a turn ---------------------------------------------------------------------------------------

    async def complete(self, op: Complete) -> AsyncIterator[Event]:
        conv = await self._expand(op.conversation)
        tools, choice = self._tools(conv)
        prompt = render(conv, tools=tools, choice=choice)
        claim: SessionState | None = None
        if self.settings.session_reuse_enabled and prompt.history and prompt.reply:
            claim = await self.cache.claim(conversation_key(conv.api_key_fingerprint, tools, prompt.history))
        turn = _Turn(
            conv=conv,
            prompt=prompt,
            tools=tools,
            choice=choice,
            full_tokens=count_tokens(prompt.full),
            claim=claim,
            question=prompt.reply if claim else prompt.full,
            session_id=claim.session_id if claim else None,
            is_reply=claim is not None,
        )
        try:
            inst = self.pool.choose(claim.instance if claim else None, conv.affinity or _affinity(conv))
            if claim is not None and claim.instance != inst.id:
                # The instance that held the session is gone: the entry is dropped and the turn goes fresh.
                self.book.session_cache["instance_gone"] += 1
                turn.claim, turn.question, turn.session_id, turn.is_reply = None, prompt.full, None, False
            key, mode = await self._resolve(inst, conv.model)
            async with self.pool.slot(inst, self.settings.gateway_queue_timeout_sec):
                yield Started(
                    model=key,
                    input_tokens=turn.full_tokens,
                    cached_input_tokens=self._cached_tokens(turn),
                    instance=inst.id,
                    session="reused" if turn.claim else "fresh",
                )
                self.book.requests["turns"] += 1
                async for event in self._run(turn, inst, key, mode):
                    yield event
        except BaseException:
            # A claim is spent only once Lingma accepted a turn in its session (spec §4.3): a 429, a failed
            # model lookup or a cancelled request before that costs the client nothing.
            if turn.claim is not None and not turn.claim_spent:
                await self.cache.restore(turn.claim)
            raise

    def _cached_tokens(self, turn: _Turn) -> int:
        if not turn.reused:
            return 0
        return max(0, turn.full_tokens - count_tokens(turn.prompt.reply))

    async def _run(
        self, turn: _Turn, inst: LingmaInstance, key: str, mode: Literal["chat", "agent"]
    ) -> AsyncIterator[Event]:
        offered = offered_tools(turn.tools)
        while True:
            attempt = _Attempt(session_id=turn.session_id)
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
                turn.session_id, turn.is_reply, turn.question = None, False, turn.prompt.full
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
        turn: _Turn,
        attempt: _Attempt,
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
        self, ev: AskAccepted | SessionAssigned | ToolInvoked | AskFinished, turn: _Turn, attempt: _Attempt
    ) -> None:
        """Bookkeeping events of a turn: acceptance, the session id, Lingma's own tool requests."""
        if isinstance(ev, AskAccepted):
            attempt.accepted = True
            if turn.is_reply and turn.claim is not None and turn.session_id == turn.claim.session_id:
                turn.claim_spent = True
        elif isinstance(ev, ToolInvoked):
            self.book.tools["lingma_tool_invokes"] += 1
        else:
            attempt.session_id = ev.session_id or attempt.session_id

    def _forced_retry(self, turn: _Turn, attempt: _Attempt) -> None:
        """A forced tool choice answered in prose: ask once more in the same session, then give up."""
        if turn.forced_retried:
            raise UpstreamError(
                "the model answered without calling a tool although the request's tool_choice required one, twice"
            )
        turn.forced_retried = True
        self.book.tools["forced_retries"] += 1
        turn.session_id, turn.is_reply, turn.question = attempt.session_id, True, FORCED_CALL_NUDGE

    async def _finish(self, turn: _Turn, inst: LingmaInstance, attempt: _Attempt) -> Finished:
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
                cached_input_tokens=self._cached_tokens(turn),
                output_tokens=count_tokens(text) + reasoning_tokens + count_tokens(call_text),
                reasoning_tokens=reasoning_tokens,
            ),
        )

    def _emit(self, out: TextOut | CallOut, attempt: _Attempt, turn: _Turn) -> Event | None:
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

    async def _remember(self, turn: _Turn, inst: LingmaInstance, attempt: _Attempt, text: str) -> None:
        if not attempt.session_id:
            return
        conv = turn.conv
        messages = merge_assistant_runs([*conv.messages, reply_message(text, attempt.calls)])
        state = SessionState(
            key=conversation_key(conv.api_key_fingerprint, turn.tools, messages),
            session_id=attempt.session_id,
            instance=inst.id,
            messages=messages,
        )
        try:
            await self.cache.put(state, response_id=conv.response_id)
        except Exception:
            log.exception("could not store the session state; the next turn will start fresh")

    # -- health ---------------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, int]:
        ready = len(self.pool.ready())
        return ready > 0, ready

    def stats(self) -> dict[str, Any]:
        return {"pool": {"instances": self.pool.snapshot()}}


def _affinity(conv: Conversation) -> str | None:
    """Without a client hint, the system text and first message keep one conversation on one instance."""
    first = next((m.text() for m in conv.messages if m.role == "user"), "")
    system = "".join(m.text() for m in conv.messages if m.role in ("system", "developer"))
    return (system + "\0" + first) if first else None
