"""The session cache on a real SQLite file: single-use claims, restarts, eviction, and a corrupt database."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from common.conversation import Message, TextPart
from sidecar.session_cache import SessionCache, SessionState

MSGS = [Message(role="user", content=[TextPart("hi")]), Message(role="assistant", content=[TextPart("yo")])]


def state(key: str, session: str = "s1") -> SessionState:
    return SessionState(key=key, session_id=session, instance="inst-0", messages=MSGS)


async def open_cache(path: Path, **kw: object) -> SessionCache:
    cache = SessionCache(path, ttl=kw.get("ttl", 3600), max_entries=kw.get("max_entries", 100), counters=Counter())  # type: ignore[arg-type]
    await cache.open()
    return cache


async def test_a_claim_is_single_use_even_under_concurrency(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3")
    await cache.put(state("k"))
    got = await asyncio.gather(*(cache.claim("k") for _ in range(8)))
    assert sum(g is not None for g in got) == 1
    assert await cache.claim("k") is None
    await cache.close()


async def test_entries_and_response_ids_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path)
    await cache.put(state("k1", "sess-1"), response_id="resp_1")
    await cache.close()
    again = await open_cache(path)
    claimed = await again.claim("k1")
    assert claimed is not None and claimed.session_id == "sess-1" and claimed.messages == MSGS
    assert await again.response("resp_1") == MSGS
    assert await again.response("resp_unknown") is None
    await again.close()


async def test_least_recently_used_entries_are_evicted(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3", max_entries=3)
    for n in range(5):
        await cache.put(state(f"k{n}"))
    assert await cache.entries() == 3
    assert await cache.claim("k0") is None and await cache.claim("k4") is not None
    assert cache.counters["evictions"] == 2
    await cache.close()


async def test_expired_entries_are_not_claimed(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3", ttl=-1)
    await cache.put(state("k"))
    assert await cache.claim("k") is None
    await cache.close()


async def test_a_corrupt_database_is_moved_aside_not_fatal(tmp_path: Path, caplog: object) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = await open_cache(path)
    await cache.put(state("k"))
    assert await cache.claim("k") is not None
    aside = list(tmp_path.glob("c.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    await cache.close()
