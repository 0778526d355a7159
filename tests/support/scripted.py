"""A real sidecar on the scripted backend and a real ``lingma-gateway handler ROUTES`` process, on loopback.

Both are subprocesses polled for readiness with deadlines; the script picks a turn by a regex on the newest
message, so each test chooses its scenario through the text it sends. A route's conftest passes its script,
its routes and its environment to ``scripted_gateway`` and yields the ``ScriptedGateway`` from a fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SidecarProcess, free_port, stop_process, wait_for
from tests.support.gateway import gateway_command

__all__ = ("ScriptedGateway", "scripted_gateway")

READY_TIMEOUT_S = 30.0


@dataclass
class ScriptedGateway:
    base_url: str
    api_key: str
    log: Path
    """The handler's output; the sidecar's is ``sidecar.log``."""
    sidecar: SidecarProcess
    handler: subprocess.Popen[bytes]
    handler_log: str = ""
    """The handler's whole log, read once it has stopped (the directory is gone by then)."""

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}

    def healthy(self) -> bool:
        if self.handler.poll() is not None:
            raise AssertionError(f"the handler exited with {self.handler.returncode}:\n{self.log.read_text()}")
        try:
            return httpx.get(self.url("/healthz"), timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


@contextmanager
def scripted_gateway(
    script: dict[str, Any], routes: str, *, api_key: str, env: dict[str, str] | None = None, prefix: str = "lgw-"
) -> Iterator[ScriptedGateway]:
    """Start the sidecar with ``script`` and ``handler routes`` (``API_KEYS=api_key`` plus ``env``); stop both."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    data = root / "data"
    data.mkdir()
    script_file = root / "script.json"
    script_file.write_text(json.dumps(script))
    sidecar = SidecarProcess(data, root / "s.sock", ["--script", str(script_file)], {})
    handler: subprocess.Popen[bytes] | None = None
    try:
        sidecar.start()
        port = free_port()
        log = root / "handler.log"
        handler_env = {**os.environ, "API_KEYS": api_key, "GATEWAY_DATA_DIR": str(data), **(env or {})}
        cmd = [*gateway_command(), "handler", routes, "--port", str(port), "--socket", str(sidecar.socket)]
        with log.open("ab") as out:
            handler = subprocess.Popen(cmd, env=handler_env, stdout=out, stderr=out)
        gateway = ScriptedGateway(f"http://127.0.0.1:{port}", api_key, log, sidecar, handler)
        wait_for(gateway.healthy, READY_TIMEOUT_S, what="the handler's /healthz")
        yield gateway
        stop_process(handler)
        gateway.handler_log = log.read_text()
    finally:
        if handler is not None:
            stop_process(handler)
        sidecar.stop()
        shutil.rmtree(root, ignore_errors=True)
