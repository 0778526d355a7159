"""An HTTP process alone (``lingma-gateway handler``, no sidecar): enough for everything decided at the HTTP edge.

Bad input, header floods and hang-ups are all answered before the sidecar is asked, and a handler starts in
about a second, so these fault tests stay cheap.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, stop_process, wait_for

API_KEY = "sk-fault-7f3a9c51"
ROUTES = "openai_chat,openai_responses,anthropic_messages,models,metrics"


class EdgeGateway:
    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "handler.log"
        self.env = {**os.environ, "API_KEYS": API_KEY, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EdgeGateway:
        cmd = [sys.executable, "-m", "handlers", "handler", ROUTES, "--port", str(self.port)]
        cmd += ["--socket", str(self.root / "absent.sock")]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        wait_for(self._up, 30, 0.05, what="the handler's /healthz")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the handler exited:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    sock.settimeout(timeout)
    started = time.monotonic()
    chunks: list[bytes] = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks), time.monotonic() - started


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
