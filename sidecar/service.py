"""The Lingma backend: what the sidecar serves, from a normalised conversation to protocol events.

A turn (docs/architecture.md §2.2): expand ``previous_response_id``; render the prompt; claim a reusable session;
pick an instance; resolve the model; take an instance slot; then ``sidecar.turn`` asks Lingma and turns its pushes
into events. The claim is a context manager around all of it: it goes back to the cache on the way out unless
the turn spent it (Lingma accepted a turn in its session, or said the session is gone).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from common.conversation import Conversation, Message, ToolChoice, ToolSpec
from common.errors import (
    PreviousResponseNotFoundError,
)
from common.protocol import (
    AdminRequest,
    AdminResult,
    Complete,
    Event,
    ModelInfo,
    Started,
)
from common.settings import AskMode, Settings
from common.stats import PoolStats
from sidecar.lingma.instance import LingmaInstance
from sidecar.lingma.models import resolve_model
from sidecar.login.admin import LoginAdmin
from sidecar.offload import Offload
from sidecar.pool import Pool
from sidecar.prompt import RenderedPrompt, render
from sidecar.session_cache import SessionCache
from sidecar.session_key import KeyChain, encode_each
from sidecar.stats import StatsBook
from sidecar.tokens import count_tokens, tokenizer_name
from sidecar.turn import TurnPlan, TurnRunner, cached_tokens, reused_session

__all__ = ("LingmaBackend",)

log = logging.getLogger("lingma_gateway.service")

AGENT_MODELS = frozenset({"lingma-agent", "agent"})


class LingmaBackend:
    def __init__(
        self, settings: Settings, stats: StatsBook, *, pool: Pool | None = None, cache_path: Path | None = None
    ) -> None:
        """The pool and cache follow ``settings`` unless a built ``pool`` or another cache file is given."""
        self.settings = settings
        self.book = stats
        self.pool = pool or Pool(settings)
        self.cache = SessionCache(
            cache_path or settings.data_dir / "session-cache.sqlite3",
            ttl=settings.session_cache_ttl_sec,
            max_entries=settings.session_cache_max_entries,
            counters=stats.session_cache,
        )
        self.offload = Offload()
        self.runner = TurnRunner(self.pool, self.cache, stats, self.offload)
        self.login_admin = LoginAdmin(self.pool)

    async def open(self) -> None:
        await self.cache.open(lock_timeout=self.settings.session_cache_lock_timeout)

    async def start(self) -> None:
        # The tokenizer takes about a second to load: on a worker, beside Lingma's start, and finished before the
        # sidecar reports ready, so no first turn (nor any connection's handshake) waits behind it.
        loading = asyncio.ensure_future(self.offload.always(tokenizer_name))
        await self.pool.start()
        await loading

    async def stop(self) -> None:
        await self.pool.stop()
        await self.cache.close()
        self.offload.shutdown()

    # -- the conversation ---------------------------------------------------------------------------

    def _tools(self, conv: Conversation) -> tuple[list[ToolSpec], ToolChoice]:
        if not self.settings.tool_forward_enabled or conv.tool_choice.mode == "none":
            return [], ToolChoice(mode="none")
        allow = self.settings.tool_allowlist
        tools = [t for t in conv.tools if not allow or t.name in allow]
        choice = conv.tool_choice
        choice.require_offered(tools, "which this gateway does not offer (TOOL_ALLOWLIST)")
        return tools, choice if tools else ToolChoice(mode="none")

    async def _expand(self, conv: Conversation) -> tuple[Conversation, list[Message]]:
        """Prepend what a ``previous_response_id`` stands for, so the turn never runs without its history.

        Also the request's own messages without instructions: what a stored response adds to its parent's.
        """
        new = [m for m in conv.messages if m.role not in ("system", "developer")]
        if not conv.previous_response_id:
            return conv, new
        earlier = await self.cache.response(conv.previous_response_id)
        if earlier is None:
            raise PreviousResponseNotFoundError(conv.previous_response_id)
        instructions = [m for m in conv.messages if m.role in ("system", "developer")]
        kept = [m for m in earlier if m.role not in ("system", "developer")]
        return msgspec.structs.replace(conv, messages=[*instructions, *kept, *new]), new

    async def count_tokens(self, conversation: Conversation) -> int:
        conv, _new = await self._expand(conversation)
        tools, choice = self._tools(conv)
        return await self.offload.run(conv, lambda: count_tokens(render(conv, tools=tools, choice=choice).full))

    # -- models ---------------------------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        models = await self.pool.all_models()
        agent = ModelInfo(key="lingma-agent", display_name="Lingma agent mode")
        return [*models, agent] if models else models

    async def raw_models(self, instance: str | None) -> str:
        inst = self.pool.get(instance) if instance else next(iter(self.pool.ready()), None)
        if inst is None:
            raise self.pool.no_capacity()
        return json.dumps(await inst.query_models())

    async def _resolve(self, inst: LingmaInstance, requested: str) -> tuple[str, AskMode]:
        mode: AskMode = self.settings.default_ask_mode
        if requested.strip().lower() in AGENT_MODELS:
            mode, requested = "agent", ""
        models = await self.pool.models_of(inst)
        key, _ = resolve_model(
            requested,
            models,
            default_key=self.settings.default_model or None,
            aliases=dict(self.settings.model_aliases),
        )
        return key, mode

    # -- a turn ---------------------------------------------------------------------------------------

    async def complete(self, op: Complete) -> AsyncIterator[Event]:
        plan, key_of_history = await self._plan(op.conversation)
        # Given back on the way out unless spent: a 429, a failed model lookup or a cancelled request before
        # Lingma accepted a turn in its session costs the client nothing (docs/architecture.md §5.2).
        async with self.cache.claim(key_of_history) as claim:
            held = claim.state
            inst = self.pool.choose(held.instance if held else None, plan.conv.affinity or _affinity(plan.conv))
            if held is not None and held.instance != inst.id:
                # The instance that held the session is gone: the entry is dropped and the turn goes fresh.
                self.book.session_cache["instance_gone"] += 1
                claim.spend()
            key, mode = await self._resolve(inst, plan.conv.model)
            async with self.pool.slot(inst):
                reused = reused_session(claim) is not None
                yield Started(
                    model=key,
                    input_tokens=plan.full_tokens,
                    cached_input_tokens=cached_tokens(plan, reused),
                    instance=inst.id,
                    session="reused" if reused else "fresh",
                )
                self.book.requests["turns"] += 1
                async for event in self.runner.run(plan, claim, inst, key, mode):
                    yield event

    async def _plan(self, conversation: Conversation) -> tuple[TurnPlan, str | None]:
        """The turn's plan, and the cache key of its history when a session may be reused."""
        conv, new = await self._expand(conversation)
        tools, choice = self._tools(conv)
        reuse = self.settings.session_reuse_enabled
        prompt, chain, key, full_tokens, reply_tokens = await self.offload.run(
            conv, lambda: _prepare(conv, tools, choice, reuse)
        )
        plan = TurnPlan(
            conv=conv,
            new_messages=new,
            prompt=prompt,
            chain=chain,
            tools=tools,
            choice=choice,
            full_tokens=full_tokens,
            reply_tokens=reply_tokens,
        )
        return plan, key

    # -- logins and bundles ----------------------------------------------------------------------------

    async def admin(self, op: AdminRequest) -> AdminResult:
        return await self.login_admin.handle(op)

    # -- health ---------------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, int]:
        ready = len(self.pool.ready())
        return ready > 0, ready

    def pool_stats(self) -> PoolStats:
        return PoolStats(instances=self.pool.snapshot())


def _prepare(
    conv: Conversation, tools: list[ToolSpec], choice: ToolChoice, reuse: bool
) -> tuple[RenderedPrompt, KeyChain, str | None, int, int]:
    """The prompt, the key chain, the key of its history (when reuse may apply), its token counts: size-bound work."""
    encoded = encode_each(conv.messages)
    prompt = render(conv, tools=tools, choice=choice, encoded=encoded)
    chain = KeyChain(conv.api_key_fingerprint, tools, conv.messages, encoded)
    key = None
    if reuse and prompt.history and prompt.reply:
        key = chain.history_key(prompt.history)
    reply_tokens = count_tokens(prompt.reply) if key is not None else 0
    return prompt, chain, key, count_tokens(prompt.full), reply_tokens


def _affinity(conv: Conversation) -> str | None:
    """Without a client hint, the system text and first message keep one conversation on one instance."""
    first = next((m.text() for m in conv.messages if m.role == "user"), "")
    system = "".join(m.text() for m in conv.messages if m.role in ("system", "developer"))
    return (system + "\0" + first) if first else None
