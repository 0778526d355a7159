"""The session cache: which upstream session holds which conversation state, in SQLite (WAL).

Entries are single-use: a follow-up claims its entry atomically (``DELETE … RETURNING``), so of two
concurrent requests with the same history one reuses the session and the other starts fresh. The state
after a clean turn is stored again under the new key. A corrupt database is moved aside (never deleted) with a
loud log line and the cache starts empty; a locked or read-only one is a clear start-up error instead.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path

import aiosqlite
import msgspec

from common.conversation import Message
from sidecar.datadir import PRIVATE_FILE, StartupError, tighten

__all__ = ("SessionCache", "SessionCacheError", "SessionState")

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

_SCHEMA_VERSION = 1
_RESPONSE_SWEEP_EVERY = 100
_encode_messages = msgspec.msgpack.Encoder().encode
_decode_messages = msgspec.msgpack.Decoder(list[Message]).decode


class SessionCacheError(StartupError):
    """The session cache cannot be opened, for a reason the operator must fix (locked, read-only)."""


class _IntegrityCheckFailed(sqlite3.DatabaseError):
    pass


# SQLite's primary result codes (the low byte of an extended code).
_LOCKED = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
_CORRUPT = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_UNWRITABLE = frozenset({3, 8, 14, 23})  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH


def _failure_kind(exc: BaseException) -> str:
    """corrupt, locked, read_only or other, from SQLite's own result code (its primary part)."""
    if isinstance(exc, _IntegrityCheckFailed):
        return "corrupt"
    if isinstance(exc, OSError):
        return "read_only" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "other"
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _CORRUPT:
        return "corrupt"
    if primary in _LOCKED:
        return "locked"
    if primary in _UNWRITABLE:
        return "read_only"
    return "other"


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

    async def open(self, *, lock_timeout: float = 15.0) -> None:
        """Open the cache, or raise ``SessionCacheError`` saying what the operator must fix.

        Only corruption (SQLite says so, or the integrity check fails) moves the file aside, with its
        ``-wal`` and ``-shm``; nothing is ever deleted. A database another process holds locked is waited
        for until ``lock_timeout``; a read-only one is an error at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lock_timeout
        warned = moved = False
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = await self._connect(busy_timeout=max(0.05, min(deadline - loop.time(), 1.0)), move=not moved)
            except (sqlite3.Error, OSError) as exc:
                kind = _failure_kind(exc)
                if kind == "locked" and loop.time() < deadline:
                    if not warned:
                        log.warning("the session cache %s is locked by another process; waiting", self.path)
                        warned = True
                    await asyncio.sleep(0.1)
                    continue
                raise SessionCacheError(self._explain(kind, exc, lock_timeout)) from None
            if db is None:
                moved = True
                continue
            self._db = db
            break
        for suffix in ("", "-wal", "-shm"):
            tighten(Path(f"{self.path}{suffix}"), PRIVATE_FILE)

    def _explain(self, kind: str, exc: BaseException, lock_timeout: float) -> str:
        if kind == "locked":
            return (
                f"the session cache {self.path} stayed locked by another process for {lock_timeout:g}s "
                "(SESSION_CACHE_LOCK_TIMEOUT); stop whatever holds it (another gateway, an sqlite3 shell) "
                "and start again"
            )
        if kind == "read_only":
            return (
                f"cannot write the session cache {self.path} ({exc}); the file or its directory is read-only: "
                "give the gateway a writable --data-dir (GATEWAY_DATA_DIR)"
            )
        return f"cannot open the session cache {self.path}: {exc}"

    def _move_aside(self, exc: BaseException) -> None:
        """Keep a corrupt database and its journal files for inspection, renamed, and start empty."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        moved: list[str] = []
        try:
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.replace(Path(f"{aside}{suffix}"))
                    moved.append(source.name)
        except OSError as err:
            raise SessionCacheError(
                f"the session cache {self.path} is corrupt ({exc}) and could not be moved aside "
                f"({err.strerror or err}); move it away by hand"
            ) from None
        log.error(
            "THE SESSION CACHE DATABASE IS CORRUPT (%s); moved %s to %s* and starting with an empty cache",
            exc,
            ", ".join(moved) or "nothing",
            aside,
        )

    async def _connect(self, *, busy_timeout: float, move: bool) -> aiosqlite.Connection | None:
        """The opened cache; None when it was corrupt and ``move`` let it be moved aside (connect again then)."""
        db = await aiosqlite.connect(self.path, timeout=busy_timeout)
        try:
            # Checked before anything is written, so a damaged file is moved aside exactly as it was found.
            async with db.execute("PRAGMA integrity_check") as cur:
                found = [str(row[0]) for row in await cur.fetchall()]
            if found != ["ok"]:
                raise _IntegrityCheckFailed(f"integrity check failed: {'; '.join(found[:3])}")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.executescript(_SCHEMA)
            # Stamping the schema version is a write: a read-only file fails here, at start, not at the first turn.
            await db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            await db.commit()
        except Exception as exc:
            corrupt = move and _failure_kind(exc) == "corrupt"
            try:
                if corrupt:
                    # Before closing: the last connection to a database deletes its -wal and -shm files by name.
                    self._move_aside(exc)
            finally:
                await db.close()
            if corrupt:
                return None
            raise
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
