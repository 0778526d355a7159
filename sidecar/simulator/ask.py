"""What a ``chat/ask`` carries that the simulator reads, and the pushes of one turn, built as the binary sends them.

With quirks on the session id appears only in ``session/title/update`` and ``chat/finish`` (``chat/answer``
carries ``sessionId: ""``), and an empty ``chat/answer`` follows every second real chunk.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .rpc import Connection

__all__ = ("AskParams", "Turn")


class ModelConfig(msgspec.Struct):
    key: str | None = None


class AskExtra(msgspec.Struct):
    modelConfig: ModelConfig | None = None


class AskParams(msgspec.Struct):
    """The ``chat/ask`` fields the simulator reads or type-checks; the rest of the DTO is ignored."""

    requestId: str | None = None
    sessionId: str | None = None
    questionText: str | None = None
    isReply: bool | None = None
    sessionType: str | None = None
    mode: str | None = None
    extra: AskExtra | None = None

    @property
    def model_key(self) -> str:
        config = self.extra.modelConfig if self.extra else None
        return (config.key or "") if config else ""


@dataclass(eq=False)
class Turn:
    conn: Connection
    request_id: str
    session_id: str
    session_type: str
    task: asyncio.Task[None] | None = None
    started: bool = False
    stop_requested: bool = False
    pieces: list[str] = field(default_factory=list)
    real_chunks: int = 0

    def _sid(self) -> str:
        return "" if self.conn.quirks else self.session_id

    def answer(self, text: str) -> dict[str, Any]:
        return self.conn.push_message(
            "chat/answer",
            {
                "requestId": self.request_id,
                "sessionId": self._sid(),
                "text": text,
                "overwrite": False,
                "isFiltered": False,
                "timestamp": int(time.time() * 1000),
                "extra": {"sessionType": self.session_type},
            },
        )

    def step(self, step: str, status: str = "done") -> dict[str, Any]:
        return self.conn.push_message(
            "chat/process_step_callback",
            {
                "requestId": self.request_id,
                "sessionId": self._sid(),
                "step": step,
                "description": "",
                "status": status,
                "result": "",
                "message": "",
            },
        )

    def finish(self, reason: str, status: int, full_answer: str, **error: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "requestId": self.request_id,
            "sessionId": self.session_id,
            "reason": reason,
            "statusCode": status,
            "fullAnswer": full_answer,
        }
        params.update(error)
        params["extra"] = {}
        return self.conn.push_message("chat/finish", params)

    async def stream(self, piece: str) -> None:
        self.pieces.append(piece)
        self.real_chunks += 1
        if self.conn.quirks and self.real_chunks % 2 == 0:
            await self.conn.send_batch([self.answer(piece), self.answer("")])
        else:
            await self.conn.send(self.answer(piece))
