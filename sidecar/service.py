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
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from common.conversation import Conversation, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import GatewayError, PreviousResponseNotFoundError, UpstreamError
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
    held: list[TextOut | CallOut] = field(default_factory=list)


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
        return tools, conv.tool_choice if tools else ToolChoice(mode="none")

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
        full_tokens = count_tokens(prompt.full)
        fingerprint = conv.api_key_fingerprint
        claim: SessionState | None = None
        if self.settings.session_reuse_enabled and prompt.history and prompt.reply:
            claim = await self.cache.claim(conversation_key(fingerprint, tools, prompt.history))
        try:
            inst = self.pool.choose(claim.instance if claim else None, conv.affinity or _affinity(conv))
        except GatewayError:
            if claim is not None:
                await self.cache.restore(claim)
            raise
        if claim is not None and claim.instance != inst.id:
            self.book.session_cache["instance_gone"] += 1
            claim = None
        key, mode = await self._resolve(inst, conv.model)
        question = prompt.reply if claim else prompt.full
        cached = max(0, full_tokens - count_tokens(question)) if claim else 0
        yield Started(
            model=key,
            input_tokens=full_tokens,
            cached_input_tokens=cached,
            instance=inst.id,
            session="reused" if claim else "fresh",
        )
        self.book.requests["turns"] += 1
        async with self.pool.slot(inst, self.settings.gateway_queue_timeout_sec):
            async for event in self._run(op, conv, prompt, inst, key, mode, claim, tools, choice, full_tokens):
                yield event

    async def _run(
        self,
        op: Complete,
        conv: Conversation,
        prompt: RenderedPrompt,
        inst: LingmaInstance,
        key: str,
        mode: Literal["chat", "agent"],
        claim: SessionState | None,
        tools: list[ToolSpec],
        choice: ToolChoice,
        full_tokens: int,
    ) -> AsyncIterator[Event]:
        forced = choice.mode in ("required", "named")
        offered = offered_tools(tools)
        session_id = claim.session_id if claim else None
        question = prompt.reply if claim else prompt.full
        is_reply = claim is not None
        content_sent = False
        stale_retried = forced_retried = False
        sent_bytes = 0
        calls_index = 0
        while True:
            attempt = _Attempt(session_id=session_id)
            filt = ToolCallFilter(offered, hold_all=forced) if offered else None
            sent_bytes += len(question.encode())
            try:
                async for ev in self._ask(inst, question, key, session_id, is_reply, mode, op.request_id, attempt):
                    if isinstance(ev, ThinkText):
                        attempt.reasoning.append(ev.text)
                        content_sent = True
                        yield ReasoningDelta(text=ev.text)
                    elif isinstance(ev, AnswerText):
                        for out in filt.feed(ev.text) if filt else [TextOut(ev.text)]:
                            event, calls_index = self._emit(out, attempt, calls_index)
                            if event is not None:
                                content_sent = True
                                yield event
                if filt is not None:
                    outs = filt.finish()
                    self._count_tools(filt)
                    if forced and not any(isinstance(o, CallOut) for o in outs):
                        if forced_retried:
                            raise UpstreamError(
                                "the model answered without calling a tool although the request's tool_choice "
                                "required one, twice"
                            )
                        forced_retried = True
                        self.book.tools["forced_retries"] += 1
                        session_id, is_reply, question = attempt.session_id, True, FORCED_CALL_NUDGE
                        continue
                    for out in outs:
                        event, calls_index = self._emit(out, attempt, calls_index)
                        if event is not None:
                            content_sent = True
                            yield event
            except StaleSessionError:
                if content_sent or stale_retried or not is_reply:
                    raise
                stale_retried = True
                self.book.session_cache["stale_retries"] += 1
                session_id, is_reply, question = None, False, prompt.full
                continue
            except GatewayError:
                if claim is not None and not attempt.accepted and not stale_retried:
                    await self.cache.restore(claim)
                raise
            break
        self.book.session_cache["upstream_bytes_sent"] += sent_bytes
        self.book.session_cache["upstream_bytes_saved"] += max(0, len(prompt.full.encode()) - sent_bytes)
        text = "".join(attempt.text)
        reasoning = "".join(attempt.reasoning)
        await self._remember(conv, tools, prompt, inst, attempt, text)
        call_text = "".join(c.name + c.arguments for c in attempt.calls)
        reasoning_tokens = count_tokens(reasoning)
        yield Finished(
            reason="tool_calls" if attempt.calls else "stop",
            usage=Usage(
                input_tokens=full_tokens,
                cached_input_tokens=max(0, full_tokens - count_tokens(question)) if is_reply else 0,
                output_tokens=count_tokens(text) + reasoning_tokens + count_tokens(call_text),
                reasoning_tokens=reasoning_tokens,
            ),
        )

    def _emit(self, out: TextOut | CallOut, attempt: _Attempt, index: int) -> tuple[Event | None, int]:
        if isinstance(out, TextOut):
            if not out.text:
                return None, index
            attempt.text.append(out.text)
            return TextDelta(text=out.text), index
        call = out.call
        call_id = uuid.uuid4().hex[:24]
        attempt.calls.append(ToolCallRecord(id=call_id, name=call.name, arguments=call.arguments, kind=call.kind))
        return ToolCall(index=index, id=call_id, name=call.name, kind=call.kind, arguments=call.arguments), index + 1

    async def _ask(
        self,
        inst: LingmaInstance,
        question: str,
        key: str,
        session_id: str | None,
        is_reply: bool,
        mode: Literal["chat", "agent"],
        request_id: str,
        attempt: _Attempt,
    ) -> AsyncIterator[ThinkText | AnswerText]:
        stream = inst.ask(question=question, model_key=key, session_id=session_id, is_reply=is_reply, mode=mode)
        assert isinstance(stream, AsyncGenerator)
        try:
            async for ev in stream:
                if isinstance(ev, AskAccepted):
                    attempt.accepted = True
                elif isinstance(ev, SessionAssigned):
                    attempt.session_id = ev.session_id
                elif isinstance(ev, ToolInvoked):
                    self.book.tools["lingma_tool_invokes"] += 1
                elif isinstance(ev, AskFinished):
                    attempt.session_id = ev.session_id or attempt.session_id
                elif isinstance(ev, (ThinkText, AnswerText)) and ev.text:
                    yield ev
        finally:
            await stream.aclose()

    def _count_tools(self, filt: ToolCallFilter) -> None:
        for name, count in filt.recognised.items():
            if count:
                self.book.tools[f"recognised_{name}"] += count
        self.book.tools["parse_failures"] += filt.parse_failures
        self.book.tools["leaked_as_text"] += filt.leaked_as_text

    async def _remember(
        self,
        conv: Conversation,
        tools: list[ToolSpec],
        prompt: RenderedPrompt,
        inst: LingmaInstance,
        attempt: _Attempt,
        text: str,
    ) -> None:
        if not attempt.session_id:
            return
        messages = merge_assistant_runs([*conv.messages, reply_message(text, attempt.calls)])
        state = SessionState(
            key=conversation_key(conv.api_key_fingerprint, tools, messages),
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
