"""Chat history per ``sessionId``, one JSON file each under ``<workDir>/cache/db/``, so it survives restarts.

The real binary keeps history server-side in ``local.db``; the gateway relies on it when it sends only the
new turn (``isReply: true``), so the simulator must hold exactly what it was sent.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import msgspec

__all__ = ("Session", "SessionRecord", "SessionStore")

_log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class SessionRecord(msgspec.Struct):
    requestId: str
    question: str
    answer: str = ""
    status: str = "running"


class Session(msgspec.Struct):
    sessionId: str
    sessionTitle: str
    gmtCreate: int
    records: list[SessionRecord] = msgspec.field(default_factory=list)

    @property
    def questions(self) -> list[str]:
        return [record.question for record in self.records]


class SessionStore:
    """Write-through: every change is on disk before the next push, so a crash loses nothing already said."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._cache: dict[str, Session] = {}

    def _path(self, session_id: str) -> Path | None:
        return self._dir / f"{session_id}.json" if _SAFE_ID.fullmatch(session_id) else None

    def get(self, session_id: str) -> Session | None:
        if session_id in self._cache:
            return self._cache[session_id]
        path = self._path(session_id)
        if path is None or not path.is_file():
            return None
        try:
            session = msgspec.json.decode(path.read_bytes(), type=Session)
        except (OSError, msgspec.DecodeError):
            _log.warning("unreadable session file %s, treated as missing", path)
            return None
        self._cache[session_id] = session
        return session

    def create(self, session_id: str, title: str) -> Session:
        session = Session(session_id, title, int(time.time() * 1000))
        self._cache[session_id] = session
        self.save(session)
        return session

    def save(self, session: Session) -> None:
        path = self._path(session.sessionId)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(session))
        tmp.replace(path)

    def delete(self, session_id: str) -> bool:
        self._cache.pop(session_id, None)
        path = self._path(session_id)
        if path is None or not path.is_file():
            return False
        path.unlink(missing_ok=True)
        return True
