"""Opening the session cache's SQLite file (WAL): its schema, upgrades, and what goes wrong on the way.

A corrupt database is moved aside (never deleted) with a loud log line and the cache starts empty; a locked or
read-only one is a clear start-up error instead. An older schema is upgraded in place, keeping every entry.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from pathlib import Path

import aiosqlite

from sidecar.datadir import PRIVATE_FILE, StartupError, tighten

__all__ = ("SessionCacheError", "open_database")

log = logging.getLogger("lingma_gateway.session_cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    last_used REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_last_used ON sessions (last_used);
CREATE TABLE IF NOT EXISTS responses (
    response_id TEXT PRIMARY KEY,
    parent TEXT,
    messages BLOB NOT NULL,
    expires REAL NOT NULL
);
"""
"""A response row holds what its turn added to the conversation (a delta) and the response it continued."""
_SCHEMA_VERSION = 2

_UPGRADE_FROM_1 = """
BEGIN;
CREATE TABLE sessions_v2 (
    key TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    last_used REAL NOT NULL,
    expires REAL NOT NULL
);
INSERT INTO sessions_v2 SELECT key, session_id, instance, last_used, expires FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v2 RENAME TO sessions;
CREATE TABLE responses_v2 (
    response_id TEXT PRIMARY KEY,
    parent TEXT,
    messages BLOB NOT NULL,
    expires REAL NOT NULL
);
INSERT INTO responses_v2 SELECT response_id, NULL, messages, expires FROM responses;
DROP TABLE responses;
ALTER TABLE responses_v2 RENAME TO responses;
COMMIT;
"""
"""Version 1 kept each session's whole history (never read back) and each response's whole history. A
version-1 response row becomes a root (no parent): its history is whole, which a chain reads the same way."""


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


async def open_database(path: Path, *, lock_timeout: float) -> aiosqlite.Connection:
    """The opened cache, or ``SessionCacheError`` saying what the operator must fix.

    Only corruption (SQLite says so, or the integrity check fails) moves the file aside, with its ``-wal``
    and ``-shm``; nothing is ever deleted. A database another process holds locked is waited for until
    ``lock_timeout``; a read-only one is an error at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lock_timeout
    warned = moved = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await _connect(path, busy_timeout=max(0.05, min(deadline - loop.time(), 1.0)), move=not moved)
        except (sqlite3.Error, OSError) as exc:
            kind = _failure_kind(exc)
            if kind == "locked" and loop.time() < deadline:
                if not warned:
                    log.warning("the session cache %s is locked by another process; waiting", path)
                    warned = True
                await asyncio.sleep(0.1)
                continue
            raise SessionCacheError(_explain(path, kind, exc, lock_timeout)) from None
        if db is not None:
            break
        moved = True
    for suffix in ("", "-wal", "-shm"):
        tighten(Path(f"{path}{suffix}"), PRIVATE_FILE)
    return db


def _explain(path: Path, kind: str, exc: BaseException, lock_timeout: float) -> str:
    if kind == "locked":
        return (
            f"the session cache {path} stayed locked by another process for {lock_timeout:g}s "
            "(SESSION_CACHE_LOCK_TIMEOUT); stop whatever holds it (another gateway, an sqlite3 shell) "
            "and start again"
        )
    if kind == "read_only":
        return (
            f"cannot write the session cache {path} ({exc}); the file or its directory is read-only: "
            "give the gateway a writable --data-dir (GATEWAY_DATA_DIR)"
        )
    return f"cannot open the session cache {path}: {exc}"


def _move_aside(path: Path, exc: BaseException) -> None:
    """Keep a corrupt database and its journal files for inspection, renamed, and start empty."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    moved: list[str] = []
    try:
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
                moved.append(source.name)
    except OSError as err:
        raise SessionCacheError(
            f"the session cache {path} is corrupt ({exc}) and could not be moved aside "
            f"({err.strerror or err}); move it away by hand"
        ) from None
    log.error(
        "THE SESSION CACHE DATABASE IS CORRUPT (%s); moved %s to %s* and starting with an empty cache",
        exc,
        ", ".join(moved) or "nothing",
        aside,
    )


async def _connect(path: Path, *, busy_timeout: float, move: bool) -> aiosqlite.Connection | None:
    """The opened cache; None when it was corrupt and ``move`` let it be moved aside (connect again then)."""
    db = await aiosqlite.connect(path, timeout=busy_timeout)
    try:
        # Checked before anything is written, so a damaged file is moved aside exactly as it was found.
        async with db.execute("PRAGMA integrity_check") as cur:
            found = [str(row[0]) for row in await cur.fetchall()]
        if found != ["ok"]:
            raise _IntegrityCheckFailed(f"integrity check failed: {'; '.join(found[:3])}")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        if row is not None and int(row[0]) == 1:
            await db.executescript(_UPGRADE_FROM_1)
            log.info("upgraded the session cache %s to schema version %d", path, _SCHEMA_VERSION)
        await db.executescript(_SCHEMA)
        # Stamping the schema version is a write: a read-only file fails here, at start, not at the first turn.
        await db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        await db.commit()
    except Exception as exc:
        corrupt = move and _failure_kind(exc) == "corrupt"
        try:
            if corrupt:
                # Before closing: the last connection to a database deletes its -wal and -shm files by name.
                _move_aside(path, exc)
        finally:
            await db.close()
        if corrupt:
            return None
        raise
    except BaseException:
        await db.close()
        raise
    return db
