"""The journal: one JSON line per JSON-RPC message received or sent, so tests learn what reached "Lingma".

It is bounded: past ``max_bytes`` the file is moved to ``<name>.1`` (replacing the previous one) and a new one
begins, so a long-running simulator keeps at most twice that on disk. Only a regular file is bounded: a device
or a pipe (``/dev/null``, a FIFO a test reads) is only ever written to, never moved or removed.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

__all__ = ("DEFAULT_MAX_BYTES", "Journal")

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class Journal:
    """Appends and flushes each line at once: the simulator may be killed (or crash on purpose) at any moment."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._max_bytes = max_bytes
        self._file = path.open("a", encoding="utf-8")
        self._bounded = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        self._size = self._file.tell() if self._bounded else 0

    def _rotate(self) -> None:
        self._file.close()
        try:
            self._path.replace(self._path.with_name(self._path.name + ".1"))
        except OSError:
            self._path.open("w", encoding="utf-8").close()  # it could not be moved aside: begin it again in place
        self._file = self._path.open("a", encoding="utf-8")
        self._size = 0

    def record(self, direction: str, message: dict[str, Any], method: str | None = None) -> None:
        """Log one message; ``method`` names the request a response answers."""
        line: dict[str, Any] = {
            "t": time.time(),
            "dir": direction,
            "method": message.get("method", method),
            "id": message.get("id"),
        }
        for key in ("params", "result", "error"):
            if key in message:
                line[key] = message[key]
        try:
            text = json.dumps(line, ensure_ascii=False, default=str)
        except (ValueError, RecursionError):
            text = json.dumps({key: line[key] for key in ("t", "dir", "method", "id")}, default=str)
        size = len(text.encode()) + 1
        if self._bounded and self._size and self._size + size > self._max_bytes:
            self._rotate()
        self._file.write(text + "\n")
        self._file.flush()
        self._size += size

    def close(self) -> None:
        self._file.close()
