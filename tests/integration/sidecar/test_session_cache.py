"""The session cache on a real SQLite file: single-use claims, write-behind stores, restarts, LRU eviction,
response chains stored as deltas, schema upgrades, and a corrupt database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import msgspec

from common.conversation import Message, TextPart
from sidecar.session_cache import ResponseDelta, SessionCache, SessionState


def state(key: str, session: str = "s1") -> SessionState:
    return SessionState(key=key, session_id=session, instance="inst-0")


def msg(role: str, text: str) -> Message:
    return Message(role=role, content=[TextPart(text)])  # type: ignore[arg-type]


async def open_cache(path: Path, **kw: float) -> SessionCache:
    cache = SessionCache(path, ttl=kw.get("ttl", 3600), max_entries=int(kw.get("max_entries", 100)), counters=Counter())
    await cache.open()
    return cache


async def take(cache: SessionCache, key: str) -> SessionState | None:
    """What a turn on this key would continue; the entry is used up, as a turn that reached Lingma uses it."""
    async with cache.claim(key) as claim:
        claim.spend()
        return claim.state


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What another process reading the file sees: only what was committed."""
    with sqlite3.connect(path) as db:
        return list(db.execute(sql))


async def test_a_claim_is_single_use_even_under_concurrency(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3")
    cache.store(state("k"))
    await cache.flush()
    got = await asyncio.gather(*(take(cache, "k") for _ in range(8)))
    assert sum(g is not None for g in got) == 1
    assert await take(cache, "k") is None
    assert (cache.counters["hits"], cache.counters["misses"]) == (1, 8)
    await cache.close()


async def test_a_claim_sees_a_pending_store_and_removes_it_for_good(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path)
    cache.store(state("k", "sess-pending"))
    assert rows(path, "SELECT key FROM sessions") == [], "the store is still pending: not on disk yet"
    assert await take(cache, "k") == state("k", "sess-pending")
    await cache.close()
    assert rows(path, "SELECT key FROM sessions") == [], "a claimed entry is never written after its claim"


async def test_stores_are_written_behind_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path)
    for n in range(20):
        cache.store(state(f"k{n}"))
    await asyncio.wait_for(_until(lambda: len(rows(path, "SELECT key FROM sessions")) == 20), 5)
    assert cache.counters["stored"] == 20
    await cache.close()


async def _until(check: object) -> None:
    while not check():  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_an_unspent_claim_goes_back_and_a_spent_one_does_not(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3")
    cache.store(state("a"))
    cache.store(state("b"))
    async with cache.claim("a") as claim:
        assert claim.state == state("a")  # left unspent: the turn never reached Lingma
    async with cache.claim("b") as claim:
        claim.spend()
    assert cache.counters["restored"] == 1
    assert await take(cache, "a") == state("a") and await take(cache, "b") is None
    await cache.close()


async def test_entries_and_responses_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path)
    history = [msg("user", "hi"), msg("assistant", "yo")]
    cache.store(state("k1", "sess-1"), ResponseDelta(id="resp_1", parent=None, messages=history))
    await cache.close()  # what SIGTERM does: pending stores are written first
    again = await open_cache(path)
    assert await take(again, "k1") == state("k1", "sess-1")
    assert await again.response("resp_1") == history
    assert await again.response("resp_unknown") is None
    await again.close()


async def test_least_recently_used_entries_are_evicted_and_a_give_back_counts_as_use(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3", max_entries=3)
    for key in ("k0", "k1", "k2"):
        cache.store(state(key))
        await cache.flush()
    async with cache.claim("k0"):
        pass  # claimed and given back unspent: k0 is now the most recently used
    await cache.flush()
    cache.store(state("k3"))
    await cache.flush()
    assert cache.counters["evictions"] == 1
    assert await take(cache, "k1") is None, "the least recently used entry went"
    assert await take(cache, "k0") is not None and await take(cache, "k3") is not None
    await cache.close()


async def test_expired_entries_are_not_claimed(tmp_path: Path) -> None:
    cache = await open_cache(tmp_path / "c.sqlite3", ttl=-1)
    cache.store(state("k"))
    assert await take(cache, "k") is None
    cache.store(state("k"))
    await cache.flush()
    assert await take(cache, "k") is None
    await cache.close()


async def test_a_response_chain_is_stored_as_deltas_and_read_whole_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path)
    whole: list[Message] = []
    parent: str | None = None
    for n in range(40):
        delta = [msg("user", f"question {n} " + "q" * 500), msg("assistant", f"answer {n} " + "a" * 500)]
        whole += delta
        cache.store(None, ResponseDelta(id=f"resp_{n}", parent=parent, messages=delta))
        parent = f"resp_{n}"
        if n % 7 == 0:
            await cache.flush()  # some links written, some pending: a chain reads across both
        assert await cache.response(parent) == whole
    await cache.close()
    again = await open_cache(path)
    assert await again.response("resp_39") == whole
    assert await again.response("resp_10") == whole[:22]
    await again.close()
    sizes = [int(r[0]) for r in rows(path, "SELECT length(messages) FROM responses ORDER BY length(messages)")]
    one_delta = len(msgspec.msgpack.encode(whole[:2]))
    assert len(sizes) == 40 and max(sizes) < one_delta + 16, "each row holds its own turn, not the history"
    assert sum(sizes) < 45 * one_delta, "the store grows by the delta of each turn"


async def test_an_expired_parent_stays_while_a_live_response_continues_it(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path, ttl=3600)
    cache.store(None, ResponseDelta(id="old", parent=None, messages=[msg("user", "a"), msg("assistant", "b")]))
    cache.store(None, ResponseDelta(id="new", parent="old", messages=[msg("user", "c"), msg("assistant", "d")]))
    cache.store(None, ResponseDelta(id="alone", parent=None, messages=[msg("user", "x")]))
    await cache.flush()
    with sqlite3.connect(path) as db:  # time passes for the first and the unrelated one
        db.execute("UPDATE responses SET expires = 1 WHERE response_id IN ('old', 'alone')")
    assert await cache.response("old") is None, "an expired response is not found by its own id"
    assert [m.text() for m in await cache.response("new") or []] == ["a", "b", "c", "d"]
    for _ in range(100):  # enough flushes for a sweep
        cache.store(state("k"))
        await cache.flush()
    assert sorted(str(r[0]) for r in rows(path, "SELECT response_id FROM responses")) == ["new", "old"]
    await cache.close()


async def test_a_chain_with_a_missing_link_is_not_found_rather_than_read_with_a_hole(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = await open_cache(path)
    cache.store(None, ResponseDelta(id="r1", parent=None, messages=[msg("user", "a")]))
    cache.store(None, ResponseDelta(id="r2", parent="r1", messages=[msg("user", "b")]))
    await cache.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM responses WHERE response_id = 'r1'")
    again = await open_cache(path)
    assert await again.response("r2") is None
    await again.close()


async def test_a_version_1_cache_is_upgraded_keeping_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    history = [msg("user", "hi"), msg("assistant", "yo")]
    blob = msgspec.msgpack.encode(history)
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE sessions (key TEXT PRIMARY KEY, session_id TEXT NOT NULL, instance TEXT NOT NULL,
                messages BLOB NOT NULL, created REAL NOT NULL, last_used REAL NOT NULL, expires REAL NOT NULL);
            CREATE INDEX sessions_last_used ON sessions (last_used);
            CREATE TABLE responses (response_id TEXT PRIMARY KEY, key TEXT NOT NULL, messages BLOB NOT NULL,
                expires REAL NOT NULL);
            PRAGMA user_version = 1;
            """
        )
        db.execute("INSERT INTO sessions VALUES ('k1', 'sess-1', 'inst-0', ?, 1, 1, 9e12)", (blob,))
        db.execute("INSERT INTO responses VALUES ('resp_1', 'k1', ?, 9e12)", (blob,))
    cache = await open_cache(path)
    assert await take(cache, "k1") == state("k1", "sess-1")
    assert await cache.response("resp_1") == history
    cache.store(None, ResponseDelta(id="resp_2", parent="resp_1", messages=[msg("user", "more")]))
    assert [m.text() for m in await cache.response("resp_2") or []] == ["hi", "yo", "more"]
    await cache.close()
    assert rows(path, "PRAGMA user_version") == [(2,)]


async def test_a_corrupt_database_is_moved_aside_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = await open_cache(path)
    cache.store(state("k"))
    assert await take(cache, "k") is not None
    aside = list(tmp_path.glob("c.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    await cache.close()
