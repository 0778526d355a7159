"""Fixtures that run the real ``lingma-sim`` process and a minimal Lingma client written for the tests.

The client has its own Content-Length parser (not the simulator's), records every raw WebSocket
message so packing and splitting can be checked, and answers every server push like a good client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

READY_TIMEOUT_S = 15.0
TURN_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frame(message: dict[str, Any] | str) -> str:
    body = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    return f"Content-Length: {len(body.encode())}\r\n\r\n{body}"


class TestFrameReader:
    """The tests' own Content-Length reader: strict, so a framing bug in the simulator fails loudly."""

    __test__ = False

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: str | bytes) -> list[dict[str, Any]]:
        self.buffer += data.encode() if isinstance(data, str) else data
        out: list[dict[str, Any]] = []
        while self.buffer:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                assert self.buffer.startswith(b"Content-Length"[: len(self.buffer)]), self.buffer[:40]
                break
            header = self.buffer[:end].decode("ascii")
            assert header.startswith("Content-Length: "), header
            length = int(header.split(":", 1)[1])
            start = end + 4
            if len(self.buffer) - start < length:
                break
            out.append(json.loads(self.buffer[start : start + length]))
            self.buffer = self.buffer[start + length :]
        return out


@dataclass
class Turn:
    reply: dict[str, Any]
    request_id: str
    pushes: list[dict[str, Any]] = field(default_factory=list)

    def of(self, method: str) -> list[dict[str, Any]]:
        """This turn's pushes of one method (pushes without a requestId, like titles, are kept)."""
        return [
            p["params"]
            for p in self.pushes
            if p["method"] == method and p["params"].get("requestId", self.request_id) == self.request_id
        ]

    @property
    def finish(self) -> dict[str, Any]:
        finishes = self.of("chat/finish")
        assert len(finishes) == 1, self.pushes
        return finishes[0]

    @property
    def text(self) -> str:
        return "".join(a["text"] for a in self.of("chat/answer"))

    @property
    def session_id(self) -> str:
        return str(self.finish["sessionId"])


class SimClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.raw: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.reader = TestFrameReader()
        self.answer_pushes = True
        self._next_id = 0
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, str), "the simulator must send text messages"
                self.raw.append(message)
                for msg in self.reader.feed(message):
                    self.received.append(msg)
                    if "method" in msg and "id" in msg and self.answer_pushes:
                        await self.ws.send(frame({"jsonrpc": "2.0", "id": msg["id"], "result": True}))
                async with self._changed:
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], start: int = 0, timeout: float = TURN_TIMEOUT_S
    ) -> dict[str, Any]:
        """The first received message from index ``start`` on that satisfies ``predicate``."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for msg in self.received[start:]:
                    if predicate(msg):
                        return msg
                if self._task.done():
                    raise AssertionError(f"connection ended; received {self.received[start:]}")
                await self._changed.wait()

    async def send_raw(self, data: str) -> None:
        await self.ws.send(data)

    async def request(self, method: str, params: Any = None, *, omit_params: bool = False) -> dict[str, Any]:
        """Send one framed request and return the whole response message."""
        self._next_id += 1
        msg_id = f"c-{self._next_id}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if not omit_params:
            message["params"] = {} if params is None else params
        start = len(self.received)
        await self.ws.send(frame(message))
        return await self.wait_for(lambda m: m.get("id") == msg_id and "method" not in m, start)

    async def result(self, method: str, params: Any = None) -> Any:
        response = await self.request(method, params)
        assert "error" not in response, response
        return response["result"]

    async def ask(self, question: str, session_id: str = "", **fields: Any) -> tuple[str, dict[str, Any], int]:
        request_id = fields.pop("requestId", uuid.uuid4().hex)
        start = len(self.received)
        params = {
            "requestId": request_id,
            "sessionId": session_id,
            "isReply": bool(session_id),
            "questionText": question,
            "chatTask": "FREE_INPUT",
            "chatContext": None,
            "stream": True,
            "source": 1,
            "sessionType": "chat",
            "mode": "chat",
            "extra": {"modelConfig": {"key": "auto"}},
        }
        params.update(fields)
        reply = await self.result("chat/ask", params)
        return request_id, reply, start

    def is_finish(self, request_id: str) -> Callable[[dict[str, Any]], bool]:
        return lambda m: m.get("method") == "chat/finish" and m["params"]["requestId"] == request_id

    async def turn(self, question: str, session_id: str = "", **fields: Any) -> Turn:
        """Ask, then collect every push up to this request's ``chat/finish``."""
        request_id, reply, start = await self.ask(question, session_id, **fields)
        turn = Turn(reply, request_id)
        if not reply["success"]:
            return turn
        finish = await self.wait_for(self.is_finish(request_id), start)
        end = self.received.index(finish)
        turn.pushes = [m for m in self.received[start : end + 1] if "method" in m]
        return turn

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Sim:
    """One ``lingma-sim start`` subprocess on free ports."""

    def __init__(self, work_dir: Path, env: dict[str, str], socket_port: int = 0) -> None:
        self.work_dir = work_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket_port = socket_port
        self.http_port = 0
        self.clients: list[SimClient] = []

    @property
    def journal(self) -> list[dict[str, Any]]:
        path = Path(self.env.get("LINGMA_SIM_JOURNAL") or self.work_dir / "sim-journal.jsonl")
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    @property
    def stderr(self) -> str:
        return (self.work_dir.parent / f"{self.work_dir.name}.stderr").read_text(errors="replace")

    def start(self) -> Sim:
        self.socket_port, self.http_port = self.socket_port or free_port(), free_port()
        cmd = [
            sys.executable,
            "-m",
            "sidecar.simulator",
            "start",
            f"--workDir={self.work_dir}",
            f"--socketPort={self.socket_port}",
            "--httpPort",
            str(self.http_port),
            "--transportType=websocket",
        ]
        with (self.work_dir.parent / f"{self.work_dir.name}.stderr").open("ab") as err:
            self.proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, stdout=err, stderr=err)
        return self

    async def connect(self, timeout: float = READY_TIMEOUT_S) -> SimClient:
        """Dial until the simulator accepts, failing early if it exited."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"lingma-sim exited with {self.proc.returncode}: {self.stderr}")
            try:
                ws = await connect(f"ws://127.0.0.1:{self.socket_port}/", max_size=None, compression=None)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            client = SimClient(ws)
            self.clients.append(client)
            return client

    async def wait_exit(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "lingma-sim did not exit"
            await asyncio.sleep(0.02)
        return self.proc.returncode

    async def stop(self) -> int | None:
        for client in self.clients:
            await client.close()
        self.clients.clear()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


SimFactory = Callable[..., Sim]


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[SimFactory]:
    """``sims(name="inst-0", scenario=None, socket_port=0, **env)`` starts a simulator; all stop at teardown."""
    started: list[Sim] = []

    def make(name: str = "inst-0", scenario: dict[str, Any] | None = None, socket_port: int = 0, **env: str) -> Sim:
        work_dir = tmp_path / name
        env = dict(env)
        env.setdefault("LINGMA_SIM_LOGGED_OUT", "0")
        env.setdefault("LINGMA_SIM_QUIRKS", "1")
        if scenario is not None:
            path = tmp_path / f"{name}-scenario.json"
            path.write_text(json.dumps(scenario), encoding="utf-8")
            env["LINGMA_SIM_SCENARIO"] = str(path)
        else:
            env.setdefault("LINGMA_SIM_SCENARIO", "")
        sim = Sim(work_dir, env, socket_port).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        try:
            await sim.stop()
        finally:
            if sim.proc is not None and sim.proc.poll() is None:
                sim.proc.kill()
                sim.proc.wait()


@pytest.fixture
async def client(sims: SimFactory) -> SimClient:
    """A client on a fresh, logged-in simulator with quirks on."""
    return await sims().connect()
