"""A real sidecar (scripted backend) and a real ``handler openai_responses`` process, on loopback.

Both are subprocesses polled for readiness with deadlines; the script picks a turn by a regex on the newest
message, so each test chooses its scenario through the text it sends.
"""

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

API_KEY = "sk-test-responses"
HEARTBEAT_SEC = 0.3
USAGE = {"input_tokens": 40, "cached_input_tokens": 8, "output_tokens": 6, "reasoning_tokens": 0}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"


def _finished(reason: str = "stop") -> dict[str, Any]:
    return {"t": "finished", "reason": reason, "usage": USAGE}


def _call(ident: str, name: str, arguments: str, kind: str = "function") -> dict[str, Any]:
    return {"t": "tool_call", "index": 0, "id": ident, "name": name, "arguments": arguments, "kind": kind}


SCRIPT: dict[str, Any] = {
    "turns": [
        {"match": "hi-from-tool", "events": [{"t": "text", "text": "The command printed hi-from-tool."}, _finished()]},
        {
            "match": "Say hello",
            "events": [{"t": "text", "text": "Hello"}, {"t": "text", "text": " there!"}, _finished()],
        },
        {
            "match": "Run echo",
            "events": [_call("e1", "exec_command", '{"cmd": "echo hi-from-tool"}'), _finished("tool_calls")],
        },
        {
            "match": "mixed please",
            "events": [
                {"t": "text", "text": "Let me check.\n"},
                _call("m1", "exec_command", '{"cmd":"ls -la"}'),
                _finished("tool_calls"),
            ],
        },
        {
            "match": "two calls",
            "events": [
                _call("t1", "exec_command", '{"cmd":"pwd"}'),
                _call("t2", "exec_command", json.dumps({"cmd": 'printf "a\\nb ✓"'})),
                _finished("tool_calls"),
            ],
        },
        {"match": "patch please", "events": [_call("p1", "apply_patch", PATCH, "custom"), _finished("tool_calls")]},
        {
            "match": "think first",
            "events": [
                {"t": "reasoning", "text": "Weighing "},
                {"t": "reasoning", "text": "options."},
                {"t": "text", "text": "Decided."},
                _finished(),
            ],
        },
        {
            "match": "slow start",
            "events": [{"t": "sleep", "ms": 1000}, {"t": "text", "text": "finally"}, _finished()],
        },
        {
            "match": "break midway",
            "events": [
                {"t": "text", "text": "partial "},
                {"t": "failed", "code": "upstream_error", "message": "Lingma failed mid-turn"},
            ],
        },
        {
            "match": "limit midway",
            "events": [
                {"t": "text", "text": "partial "},
                {"t": "failed", "code": "rate_limited", "message": "Slow down", "retry_after_s": 4},
            ],
        },
        {
            "match": "busy now",
            "events": [{"t": "failed", "code": "rate_limited", "message": "queue full", "retry_after_s": 2}],
        },
        {"match": "cut short", "events": [{"t": "text", "text": "This is trunc"}, _finished("length")]},
        {
            "match": "continue from nowhere",
            "events": [
                {
                    "t": "failed",
                    "code": "bad_request",
                    "message": "Previous response with id 'resp_missing' not found.",
                    "detail_code": "previous_response_not_found",
                    "param": "previous_response_id",
                }
            ],
        },
    ]
}


@dataclass
class Gateway:
    base: str
    sidecar: SidecarProcess
    handler: subprocess.Popen[bytes]
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {API_KEY}"}


def _handler_command() -> list[str]:
    script = Path(sys.executable).with_name("lingma-gateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from handlers.cli import main; main()"]


def _healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the handler exited with {proc.returncode}:\n{log.read_text()}")
    try:
        return httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    root = Path(tempfile.mkdtemp(prefix="lgr-", dir="/tmp"))
    data = root / "data"
    data.mkdir()
    script = root / "script.json"
    script.write_text(json.dumps(SCRIPT))
    sidecar = SidecarProcess(data, root / "s.sock", ["--script", str(script)], {})
    sidecar.start()
    port = free_port()
    log = root / "handler.log"
    env = {
        **os.environ,
        "API_KEYS": API_KEY,
        "GATEWAY_HEARTBEAT_SEC": str(HEARTBEAT_SEC),
        "GATEWAY_DATA_DIR": str(data),
    }
    cmd = [*_handler_command(), "handler", "openai_responses", "--port", str(port), "--socket", str(sidecar.socket)]
    with log.open("ab") as out:
        handler = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base, handler, log), 30, what="the handler's /healthz")
        yield Gateway(base, sidecar, handler, log)
    finally:
        if handler.poll() is None:
            handler.terminate()
            try:
                handler.wait(20)
            except subprocess.TimeoutExpired:
                handler.kill()
                handler.wait()
        sidecar.stop()
        shutil.rmtree(root, ignore_errors=True)
