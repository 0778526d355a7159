"""A real sidecar (scripted backend) and a real ``lingma-gateway handler`` process, shared by a test module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SidecarProcess, free_port, wait_for

API_KEY = "k1"


def _started(total: int, cached: int) -> dict[str, Any]:
    return {"t": "started", "model": "scripted", "input_tokens": total, "cached_input_tokens": cached, "instance": "s0"}


def _usage(total: int, cached: int, output: int) -> dict[str, int]:
    return {"input_tokens": total, "cached_input_tokens": cached, "output_tokens": output}


def _call(index: int, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"t": "tool_call", "index": index, "id": call_id, "name": name, "arguments": json.dumps(arguments)}


SCRIPT: dict[str, Any] = {
    "turns": [
        {
            "match": "TURN-TEXT",
            "events": [
                _started(30, 10),
                {"t": "text", "text": "Hello"},
                {"t": "text", "text": " there!"},
                {"t": "finished", "reason": "stop", "usage": _usage(30, 10, 3)},
            ],
        },
        {
            "match": "TURN-TOOL",
            "events": [
                _started(40, 0),
                {"t": "text", "text": "Let me check."},
                {"t": "text", "text": "\n"},
                _call(0, "t1", "Bash", {"command": 'ls -la "my dir"\necho é'}),
                {"t": "finished", "reason": "tool_calls", "usage": _usage(40, 0, 12)},
            ],
        },
        {
            "match": "TURN-TWO-TOOLS",
            "events": [
                _call(0, "t1", "Bash", {"command": "ls"}),
                _call(1, "t2", "Read", {"file_path": "/etc/hostname"}),
                {"t": "finished", "reason": "tool_calls", "usage": _usage(50, 20, 20)},
            ],
        },
        {
            "match": "TURN-THINK",
            "events": [
                {"t": "reasoning", "text": "Pondering "},
                {"t": "reasoning", "text": "deeply."},
                {"t": "text", "text": "Forty-two."},
                {"t": "finished", "reason": "stop", "usage": _usage(20, 0, 9)},
            ],
        },
        {
            "match": "TURN-EXPLODE",
            "events": [
                {"t": "text", "text": "partial answer"},
                {"t": "failed", "code": "upstream_error", "message": "boom from upstream"},
            ],
        },
        {
            "match": "TURN-EARLY-FAIL",
            "events": [{"t": "failed", "code": "rate_limited", "message": "slow down", "retry_after_s": 2}],
        },
        {"match": "TURN-COUNT", "events": [_started(6, 2), {"t": "text", "text": "counted"}, {"t": "finished"}]},
        {
            "match": "TURN-SLOW",
            "events": [{"t": "sleep", "ms": 1000}, {"t": "text", "text": "late"}, {"t": "finished"}],
        },
    ]
}


@dataclass
class Gateway:
    base_url: str
    log: Path
    sidecar: SidecarProcess
    handler: subprocess.Popen[bytes]

    def url(self, path: str) -> str:
        return self.base_url + path


def _gateway_binary() -> str:
    beside = Path(sys.executable).with_name("lingma-gateway")
    found = str(beside) if beside.exists() else shutil.which("lingma-gateway")
    assert found, "the lingma-gateway console script is not installed"
    return found


def _healthy(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the handler exited with {proc.returncode}:\n{log.read_text()}")
    try:
        return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    root = Path(tempfile.mkdtemp(prefix="lgw-am-", dir="/tmp"))
    data = root / "data"
    data.mkdir()
    script = root / "script.json"
    script.write_text(json.dumps(SCRIPT))
    sidecar = SidecarProcess(data, root / "s.sock", ["--script", str(script)], {}).start()
    port = free_port()
    log = root / "handler.log"
    env = {**os.environ, "API_KEYS": API_KEY, "GATEWAY_HEARTBEAT_SEC": "0.3", "GATEWAY_DATA_DIR": str(data)}
    cmd = [
        _gateway_binary(),
        "handler",
        "anthropic_messages,models",
        "--port",
        str(port),
        "--socket",
        str(sidecar.socket),
    ]
    with log.open("ab") as out:
        handler = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base_url, handler, log), 30, what="the handler's /healthz")
        yield Gateway(base_url=base_url, log=log, sidecar=sidecar, handler=handler)
    finally:
        handler.terminate()
        try:
            handler.wait(20)
        except subprocess.TimeoutExpired:
            handler.kill()
            handler.wait()
        sidecar.stop()
        handler_log = log.read_text()
        shutil.rmtree(root, ignore_errors=True)
    assert "Traceback" not in handler_log, handler_log
