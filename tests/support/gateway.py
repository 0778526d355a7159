"""A real gateway in subprocesses (bundled ``serve`` or split sidecar + handler), for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, wait_for


def gateway_command() -> list[str]:
    """The ``lingma-gateway`` console script beside this interpreter, else the same CLI through ``python -c``."""
    script = Path(sys.executable).with_name("lingma-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from handlers.cli import main; main()"]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Gateway:
    """Processes started with ``start()``; ``stop()`` ends them all (and checks nothing is left)."""

    def __init__(self, root: Path, *, mode: str = "serve", scenario: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, routes: str = "openai_chat,models,admin,metrics",
                 simulator_flag: bool = True) -> None:  # fmt: skip
        self.root = root
        self.mode = mode
        self.data = root / "data"
        self.socket = root / "s.sock"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.routes = routes
        self.simulator_flag = simulator_flag
        self.log = root / "gateway.log"
        self.env = {**os.environ, "GATEWAY_HEARTBEAT_SEC": "0.5", **(env or {})}
        self.env.pop("LINGMA_SIM_SCENARIO", None)
        self.scenario: Path | None = None
        root.mkdir(parents=True, exist_ok=True)
        if scenario is not None:
            self.scenario = root / "scenario.json"
            self.scenario.write_text(json.dumps(scenario))
            self.env["LINGMA_SIM_SCENARIO"] = str(self.scenario)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def work_dir(self) -> Path:
        return self.data / "instances" / "inst-0"

    @property
    def journal(self) -> Path:
        return self.work_dir / "sim-journal.jsonl"

    def journal_lines(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def asks(self) -> list[dict[str, Any]]:
        return [e["params"] for e in self.journal_lines() if e.get("dir") == "in" and e.get("method") == "chat/ask"]

    def lingma_pid(self) -> int | None:
        pidfile = self.work_dir / "lingma.pid"
        if not pidfile.exists():
            return None
        try:
            return int(json.loads(pidfile.read_text())["pid"])
        except (ValueError, KeyError):
            return None

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "handlers", *args], env=self.env, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def start_sidecar(self) -> subprocess.Popen[bytes]:
        flags = ["--simulator"] if self.simulator_flag else []
        proc = self._spawn(["sidecar", "--data-dir", str(self.data), "--socket", str(self.socket), *flags])
        self.sidecar = proc
        return proc

    def start(self, wait: bool = True) -> Gateway:
        self.root.mkdir(parents=True, exist_ok=True)
        common = ["--port", str(self.port), "--socket", str(self.socket)]
        if self.mode == "serve":
            flags = ["--simulator"] if self.simulator_flag else []
            self.main = self._spawn(["serve", "--data-dir", str(self.data), *common, *flags])
        else:
            self.start_sidecar()
            self.main = self._spawn(["handler", self.routes, *common])
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def check() -> bool:
            for proc in self.procs:
                if proc.poll() is not None and proc in (self.main,):
                    raise AssertionError(f"gateway exited with {proc.returncode}:\n{self.log.read_text()[-4000:]}")
            return _ready(self.url)

        wait_for(check, timeout, 0.1, what=f"gateway readiness at {self.url}")

    def signal_main(self, sig: int = signal.SIGTERM) -> None:
        self.main.send_signal(sig)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 30
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pid = self.lingma_pid()
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)

    def logs(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for extra in self.data.rglob("*.log"):
            text += extra.read_text(errors="replace")
        return text


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def sse_data(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[6:] for line in body.split("\n") if line.startswith("data: ")]
