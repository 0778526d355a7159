"""The baseline client: the simulator driven directly over JSON-RPC, with no gateway in between.

Minimal on purpose (it sets the floor the gateway is compared to): one WebSocket, ``initialize``, then
``chat/ask`` turns one at a time, reading the pushed ``chat/answer`` ... ``chat/finish`` for that
``requestId``. Every server request is answered ``result: null``; the replies to one incoming
WebSocket message go out packed in one message.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.framing import FrameBuffer, frame

__all__ = ("AskFailed", "LingmaClient")


class AskFailed(Exception):
    """The simulator refused the ask or finished it with a failure."""


def _encode(message: dict[str, Any]) -> str:
    return frame(json.dumps(message, separators=(",", ":")).encode())


def ask_params(request_id: str, text: str) -> dict[str, Any]:
    """The ``chat/ask`` params the gateway sends for a one-message chat (copied from the simulator journal)."""
    return {
        "requestId": request_id,
        "sessionId": "",
        "isReply": False,
        "questionText": text,
        "chatTask": "FREE_INPUT",
        "chatContext": None,
        "stream": True,
        "source": 1,
        "sessionType": "chat",
        "mode": "chat",
        "taskDefinitionType": "",
        "extra": {"modelConfig": {"key": "auto"}},
        "pluginPayloadConfig": {"isEnableProjectRule": False, "isEnableAskAgent": False, "isEnableAutoMemory": False},
        "customModel": None,
        "codeLanguage": "",
        "shellType": "",
        "targetAgent": "",
    }


class LingmaClient:
    """One WebSocket to one simulator; ``ask`` returns the streamed answer text."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._buf = FrameBuffer()
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, url: str) -> LingmaClient:
        ws = await connect(url, compression=None, ping_interval=None, max_size=None, open_timeout=10)
        client = cls(ws)
        await client._call("initialize", {"processId": None, "clientInfo": {"name": "bench", "version": "0"}})
        return client

    async def close(self) -> None:
        await self._ws.close()

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        msg_id = next(self._ids)
        await self._ws.send(_encode({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}))
        while True:
            for message in await self._receive():
                if message.get("id") == msg_id and "method" not in message:
                    if "error" in message:
                        raise AskFailed(f"{method}: {message['error']}")
                    return message.get("result")

    async def _receive(self) -> list[dict[str, Any]]:
        """One WebSocket message's frames, after answering the server requests among them."""
        messages = [json.loads(body) for body in self._buf.feed(await self._ws.recv())]
        replies = [
            _encode({"jsonrpc": "2.0", "id": m["id"], "result": None})
            for m in messages
            if "method" in m and m.get("id") is not None
        ]
        if replies:
            await self._ws.send("".join(replies))
        return messages

    async def ask(self, text: str, arrivals: list[float] | None = None) -> str:
        """``arrivals``, when given, gets the ``perf_counter`` time of each ``chat/answer``."""
        request_id = uuid.uuid4().hex
        msg_id = next(self._ids)
        await self._ws.send(
            _encode({"jsonrpc": "2.0", "id": msg_id, "method": "chat/ask", "params": ask_params(request_id, text)})
        )
        accepted = False
        pieces: list[str] = []
        while True:
            for message in await self._receive():
                method = message.get("method")
                if method is None:
                    if message.get("id") == msg_id:
                        result = message.get("result") or {}
                        if "error" in message or not result.get("success"):
                            raise AskFailed(f"chat/ask refused: {message.get('error') or result}")
                        accepted = True
                    continue
                params = message.get("params") or {}
                if params.get("requestId") != request_id:
                    continue
                if method == "chat/answer":
                    if arrivals is not None:
                        arrivals.append(time.perf_counter())
                    pieces.append(params.get("text") or "")
                elif method == "chat/finish":
                    if params.get("statusCode") != 200:
                        raise AskFailed(f"chat/finish {params.get('statusCode')}: {params.get('errorMessage')}")
                    if not accepted:
                        raise AskFailed("chat/finish before the chat/ask result")
                    return "".join(pieces)
