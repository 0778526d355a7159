"""The session cache: which upstream session holds which conversation state, in SQLite (WAL).

Entries are single-use: a follow-up claims its entry atomically (``DELETE … RETURNING``), so of two
concurrent requests with the same history one reuses the session and the other starts fresh. The state
after a clean turn is stored again under the new key. A database that cannot be opened is moved aside
with a loud log line; the cache then starts empty instead of taking the sidecar down.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path

import aiosqlite
import msgspec

from common.conversation import Message

__all__ = ("SessionCache", "SessionState")

log = logging.getLogger("lingma_gateway.session_cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    messages BLOB NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_last_used ON sessions (last_used);
CREATE TABLE IF NOT EXISTS responses (
    response_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    messages BLOB NOT NULL,
    expires REAL NOT NULL
);
"""

_RESPONSE_SWEEP_EVERY = 100
_encode_messages = msgspec.msgpack.Encoder().encode
_decode_messages = msgspec.msgpack.Decoder(list[Message]).decode


class SessionState(msgspec.Struct, frozen=True):
    key: str
    session_id: str
    instance: str
    messages: list[Message]
    """The whole normalised conversation this session holds, so a lost session can be rebuilt fresh."""


class SessionCache:
    def __init__(self, path: Path, *, ttl: float, max_entries: int, counters: Counter[str]) -> None:
        self.path = path
        self.ttl = ttl
        self.max_entries = max_entries
        self.counters = counters
        self._db: aiosqlite.Connection | None = None
        self._puts = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "THE SESSION CACHE DATABASE IS UNREADABLE (%s); moved it to %s and starting with an empty cache",
                exc,
                aside,
            )
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._db = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.executescript(_SCHEMA)
            async with db.execute("PRAGMA quick_check") as cur:
                row = await cur.fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {row}")
            await db.commit()
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the session cache is not open")
        return self._db

    async def claim(self, key: str) -> SessionState | None:
        """Take the entry for ``key`` if there is a live one; nobody else can take it after this."""
        now = time.time()
        async with self.db.execute(
            "DELETE FROM sessions WHERE key = ? RETURNING session_id, instance, messages, expires", (key,)
        ) as cur:
            row = await cur.fetchone()
        await self.db.commit()
        if row is None or row[3] <= now:
            self.counters["misses"] += 1
            return None
        self.counters["hits"] += 1
        return SessionState(key=key, session_id=row[0], instance=row[1], messages=_decode_messages(row[2]))

    async def put(self, state: SessionState, *, response_id: str | None = None, counter: str = "stored") -> None:
        """Store a state and evict in the same transaction (each statement is a hop to SQLite's thread)."""
        now = time.time()
        blob = _encode_messages(state.messages)
        await self.db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (state.key, state.session_id, state.instance, blob, now, now, now + self.ttl),
        )
        if response_id:
            await self.db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", (response_id, state.key, blob, now + self.ttl)
            )
        # Expired entries, and all but the max_entries most recently used ones, go in one statement.
        async with self.db.execute(
            "DELETE FROM sessions WHERE expires <= ? OR key IN "
            "(SELECT key FROM sessions ORDER BY last_used DESC LIMIT -1 OFFSET ?)",
            (now, self.max_entries),
        ) as cur:
            evicted = max(0, cur.rowcount)
        self._puts += 1
        if self._puts % _RESPONSE_SWEEP_EVERY == 0:
            await self.db.execute("DELETE FROM responses WHERE expires <= ?", (now,))
        await self.db.commit()
        self.counters[counter] += 1
        self.counters["evictions"] += evicted

    async def restore(self, state: SessionState) -> None:
        """Give back a claim whose turn never reached Lingma."""
        await self.put(state, counter="restored")

    async def response(self, response_id: str) -> list[Message] | None:
        async with self.db.execute(
            "SELECT messages FROM responses WHERE response_id = ? AND expires > ?", (response_id, time.time())
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _decode_messages(row[0])

    async def entries(self) -> int:
        async with self.db.execute("SELECT COUNT(*) FROM sessions") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
