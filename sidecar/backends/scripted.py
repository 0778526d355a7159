"""A backend that replays protocol events from a JSON file: real frames over the real socket, no Lingma.

The file is ``{"turns": [{"match": "regex?", "events": [...]}]}``; each event is a protocol frame in its
JSON form (``{"t": "text", "text": "hi"}``) or ``{"t": "sleep", "ms": 100}``. A turn is the first entry
whose ``match`` is found in the newest message, else the next unmatched entry in order, else an echo.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from common.conversation import Conversation
from common.protocol import (
    AdminRequest,
    AdminResult,
    Complete,
    Event,
    Failed,
    Finished,
    ModelInfo,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    Usage,
)
from common.stats import InstanceState, InstanceStats, PoolStats
from sidecar.stats import StatsBook

__all__ = ("ScriptedBackend",)


class Sleep(msgspec.Struct, tag="sleep", tag_field="t"):
    ms: int


ScriptItem = Started | TextDelta | ReasoningDelta | ToolCall | Finished | Failed | Sleep


class ScriptTurn(msgspec.Struct):
    events: list[ScriptItem]
    match: str | None = None


class Script(msgspec.Struct):
    turns: list[ScriptTurn] = msgspec.field(default_factory=list)


class ScriptedBackend:
    def __init__(self, script: Path | bytes | None, stats: StatsBook) -> None:
        """``script`` is the JSON file, or its content."""
        raw = script.read_bytes() if isinstance(script, Path) else script
        self._script = msgspec.json.decode(raw, type=Script) if raw else Script()
        self._next = 0
        self._stats = stats

    async def open(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _pick(self, newest: str) -> list[ScriptItem]:
        for turn in self._script.turns:
            if turn.match is not None and re.search(turn.match, newest):
                return turn.events
        unmatched = [t for t in self._script.turns if t.match is None]
        if self._next < len(unmatched):
            self._next += 1
            return unmatched[self._next - 1].events
        return [TextDelta(text=f"echo: {newest}"), Finished(reason="stop")]

    async def complete(self, op: Complete) -> AsyncIterator[Event]:
        conv = op.conversation
        newest = conv.messages[-1].text() if conv.messages else ""
        items = self._pick(newest)
        self._stats.requests["started"] += 1
        try:
            if not items or not isinstance(items[0], Started):
                yield Started(model=conv.model, instance="scripted")
            for item in items:
                if isinstance(item, Sleep):
                    await asyncio.sleep(item.ms / 1000)
                    continue
                if isinstance(item, (Finished, Failed)):
                    # Counted before the yield: the server stops reading once the terminal is sent.
                    self._stats.requests["finished" if isinstance(item, Finished) else "failed"] += 1
                    yield item
                    return
                yield item
            self._stats.requests["finished"] += 1
            yield Finished(reason="stop", usage=Usage())
        except asyncio.CancelledError:
            self._stats.requests["cancelled"] += 1
            raise

    async def count_tokens(self, conversation: Conversation) -> int:
        return sum(len(m.text().split()) for m in conversation.messages)

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo(key="scripted", display_name="Scripted", is_default=True)]

    async def raw_models(self, instance: str | None) -> str:
        return '{"chat":[{"key":"scripted","displayName":"Scripted","isDefault":true}]}'

    async def admin(self, op: AdminRequest) -> AdminResult:
        body = {"ok": False, "error": "a scripted sidecar has no Lingma accounts"}
        return AdminResult(status=404, json=json.dumps(body))

    def readiness(self) -> tuple[bool, int]:
        return True, 1

    def pool_stats(self) -> PoolStats:
        served = self._stats.requests["started"]
        return PoolStats(instances=[InstanceStats(id="scripted", state=InstanceState.READY, served_total=served)])
