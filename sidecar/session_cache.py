"""The session cache: which upstream session holds which conversation state, and what each response added.

Entries are single-use: a follow-up claims its entry atomically and durably (``DELETE … RETURNING``, committed
before the turn goes on), so of two concurrent requests with the same history one reuses the session and the
other starts fresh. A claim is a context manager the turn spends: once Lingma has taken a turn in the session
(or said it no longer holds it) the entry is used up; an unspent claim is given back on exit.

Stores are written behind (docs/performance.md): kept in memory and written by one task, all that gathered
in one transaction (group commit), so no turn waits for SQLite to store its session state. Claims and
response lookups see pending stores. ``close`` (SIGTERM) writes them all; a kill -9 loses only the session
stores of the last moments, which costs the next turn a fresh session, never a wrong answer.

A response is different: its client holds its id and sends only what comes after it, so a lost response
cannot be made up by a fresh turn. ``store`` hands back a future for the commit that holds the response, and
the turn awaits it before its terminal: an id a client has been given is already on disk. A transaction
SQLite refuses is tried once more; if that fails too, the future says so and the turn ends in an error
rather than hand out an id that is not saved. It shares the
group commit with every other store, so it costs one commit's latency, not one transaction per response.

Eviction is least recently used. An entry is used once, when it is claimed (and then deleted), so its last use
before that is when it was stored or given back: ``last_used`` is that time, and eviction drops the oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import msgspec

from common.conversation import Message
from sidecar.session_db import SessionCacheError, open_database
from sidecar.session_key import merge_assistant_runs

__all__ = ("Claim", "ResponseDelta", "SessionCache", "SessionCacheError", "SessionState")

log = logging.getLogger("lingma_gateway.session_cache")

_RESPONSE_SWEEP_EVERY = 100
_MAX_CHAIN = 100_000
_encode_messages = msgspec.msgpack.Encoder().encode
_decode_messages = msgspec.msgpack.Decoder(list[Message]).decode

_CHAIN = """
WITH RECURSIVE chain(parent, messages, expires, depth) AS (
    SELECT parent, messages, expires, 0 FROM responses WHERE response_id = ?
    UNION ALL
    SELECT r.parent, r.messages, r.expires, chain.depth + 1
    FROM responses AS r JOIN chain ON r.response_id = chain.parent
    WHERE chain.depth < ?
)
SELECT parent, messages, expires FROM chain ORDER BY depth
"""
"""A response and its ancestors, newest first, in one statement."""

_SWEEP_RESPONSES = """
WITH RECURSIVE needed(response_id) AS (
    SELECT parent FROM responses WHERE expires > ? AND parent IS NOT NULL
    UNION
    SELECT r.parent FROM responses AS r JOIN needed ON r.response_id = needed.response_id
    WHERE r.parent IS NOT NULL
)
DELETE FROM responses WHERE expires <= ? AND response_id NOT IN (SELECT response_id FROM needed)
"""
"""Expired responses that no live response continues (an ancestor stays while a descendant lives)."""


class SessionState(msgspec.Struct, frozen=True):
    """Which Lingma session, on which instance, holds the conversation whose key this is."""

    key: str
    session_id: str
    instance: str


class ResponseDelta(msgspec.Struct, frozen=True):
    """What one stored response added to the conversation of the response it continued (``parent``)."""

    id: str
    parent: str | None
    messages: list[Message]


class Claim:
    """A session entry taken for one turn; given back when the turn leaves it unspent."""

    def __init__(self, state: SessionState | None) -> None:
        self.state = state
        self.spent = False

    def spend(self) -> None:
        """The entry is used up (Lingma's session moved on, or is gone): never give it back."""
        self.spent = True


class SessionCache:
    def __init__(self, path: Path, *, ttl: float, max_entries: int, counters: Counter[str]) -> None:
        self.path = path
        self.ttl = ttl
        self.max_entries = max_entries
        self.counters = counters
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        """Held while SQLite is written or read, so pending stores are either in memory or committed."""
        self._sessions: dict[str, tuple[SessionState, float]] = {}
        self._responses: dict[str, tuple[ResponseDelta, float]] = {}
        self._committed: list[asyncio.Future[bool]] = []
        """Waiters for the commit that will hold the pending responses."""
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._flushes = 0

    async def open(self, *, lock_timeout: float = 15.0) -> None:
        """Open the cache, or raise ``SessionCacheError`` saying what the operator must fix."""
        self._db = await open_database(self.path, lock_timeout=lock_timeout)
        self._writer = asyncio.create_task(self._write_behind(), name="session cache writer")

    async def close(self) -> None:
        """Write every pending store, then close."""
        if self._db is None:
            return
        writer, self._writer = self._writer, None
        if writer is not None:
            async with self._lock:  # never cancel the writer in the middle of a transaction
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        await self.flush()
        await self._db.close()
        self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the session cache is not open")
        return self._db

    # -- claims ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def claim(self, key: str | None) -> AsyncIterator[Claim]:
        """The entry for ``key`` (none without a key) for one turn: spend it, or it goes back on exit."""
        claim = Claim(await self._take(key) if key is not None else None)
        try:
            yield claim
        finally:
            if claim.state is not None and not claim.spent:
                self._put(claim.state, "restored")

    async def _take(self, key: str) -> SessionState | None:
        """Take the live entry for ``key``, pending or written; nobody else can take it after this."""
        now = time.time()
        async with self._lock:
            pending = self._sessions.pop(key, None)
            # Durable at once, even when the entry was still pending: an older row under the key goes too.
            async with self.db.execute(
                "DELETE FROM sessions WHERE key = ? RETURNING session_id, instance, expires", (key,)
            ) as cur:
                row = await cur.fetchone()
            await self.db.commit()
        state: SessionState | None = None
        if pending is not None and pending[1] + self.ttl > now:
            state = pending[0]
        elif row is not None and row[2] > now:
            state = SessionState(key=key, session_id=row[0], instance=row[1])
        self.counters["hits" if state is not None else "misses"] += 1
        return state

    # -- stores ---------------------------------------------------------------------------------------

    def store(self, state: SessionState | None, response: ResponseDelta | None = None) -> asyncio.Future[bool] | None:
        """Keep a turn's session state and its response for the writer; returns at once.

        With a response, the future is done once the transaction that holds it has ended: True when it
        committed, False when SQLite refused it twice (logged and counted as store failures).
        """
        if state is not None:
            self._put(state, "stored")
        if response is None or not self._writing(response.id):
            return None
        self._responses[response.id] = (response, time.time())
        committed = asyncio.get_running_loop().create_future()
        self._committed.append(committed)
        self._wake.set()
        return committed

    def _put(self, state: SessionState, counter: str) -> None:
        if self._writing(state.key):
            self._sessions[state.key] = (state, time.time())
            self.counters[counter] += 1
            self._wake.set()

    def _writing(self, what: str) -> bool:
        """Whether stores are taken; after ``close`` (a turn outlived the drain) one is dropped, with a warning."""
        if self._writer is None:
            log.warning("the session cache is closed; %s was not stored and its follow-up will start fresh", what)
            self.counters["store_failures"] += 1
        return self._writer is not None

    async def flush(self) -> None:
        """Write every pending store in one transaction (what gathered while the last one ran)."""
        async with self._lock:
            sessions, self._sessions = self._sessions, {}
            responses, self._responses = self._responses, {}
            committed, self._committed = self._committed, []
            ok = False
            try:
                ok = not (sessions or responses) or await self._write(sessions, responses, last_try=False)
                ok = ok or await self._write(sessions, responses, last_try=True)
            finally:
                for waiter in committed:
                    if not waiter.done():
                        waiter.set_result(ok)

    async def _write_behind(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def _write(
        self,
        sessions: dict[str, tuple[SessionState, float]],
        responses: dict[str, tuple[ResponseDelta, float]],
        *,
        last_try: bool,
    ) -> bool:
        """One transaction for the batch; False (rolled back) when SQLite refused it."""
        db = self.db
        try:
            await db.executemany(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                [(s.key, s.session_id, s.instance, at, at + self.ttl) for s, at in sessions.values()],
            )
            await db.executemany(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                [(r.id, r.parent, _encode_messages(r.messages), at + self.ttl) for r, at in responses.values()],
            )
            evicted = await self._evict(time.time())
            await db.commit()
        except Exception:
            with contextlib.suppress(Exception):
                await db.rollback()
            if not last_try:
                log.warning("could not write the session cache's pending stores; trying once more", exc_info=True)
                return False
            log.exception(
                "could not write %d session entries and %d responses; their follow-ups will start fresh",
                len(sessions),
                len(responses),
            )
            self.counters["store_failures"] += len(sessions) + len(responses)
            return False
        self.counters["evictions"] += evicted
        return True

    async def _evict(self, now: float) -> int:
        """Drop expired entries and all but the ``max_entries`` most recently used; sweep responses now and then."""
        async with self.db.execute(
            "DELETE FROM sessions WHERE expires <= ? OR key IN "
            "(SELECT key FROM sessions ORDER BY last_used DESC LIMIT -1 OFFSET ?)",
            (now, self.max_entries),
        ) as cur:
            evicted = max(0, cur.rowcount)
        self._flushes += 1
        if self._flushes % _RESPONSE_SWEEP_EVERY == 0:
            await self.db.execute(_SWEEP_RESPONSES, (now, now))
        return evicted

    # -- responses ------------------------------------------------------------------------------------

    async def response(self, response_id: str) -> list[Message] | None:
        """The whole conversation up to and including a stored response, from its chain of deltas.

        None when the response is unknown or expired, or when a link of its chain is missing: a turn then
        never runs on a history with a hole in it.
        """
        now = time.time()
        deltas: list[list[Message]] = []
        async with self._lock:
            link: str | None = response_id
            while link is not None and link in self._responses:
                delta, at = self._responses[link]
                if link == response_id and at + self.ttl <= now:
                    return None
                deltas.append(delta.messages)
                link = delta.parent
            if link is not None:
                async with self.db.execute(_CHAIN, (link, _MAX_CHAIN)) as cur:
                    rows = list(await cur.fetchall())
                if not rows or (link == response_id and rows[0][2] <= now):
                    return None
                if rows[-1][0] is not None:
                    log.warning("response %s continues %s, which is gone", response_id, rows[-1][0])
                    return None
                deltas += [_decode_messages(row[1]) for row in rows]
        return merge_assistant_runs([m for delta in reversed(deltas) for m in delta])
