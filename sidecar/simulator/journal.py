"""The journal: one JSON line per JSON-RPC message received or sent, so tests learn what reached "Lingma"."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ("Journal",)


class Journal:
    """Appends and flushes each line at once: the simulator may be killed (or crash on purpose) at any moment."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

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
        self._file.write(text + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
