"""The script for a real sidecar (scripted backend) and a real ``lingma-gateway handler`` process, per test module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.scripted import ScriptedGateway, scripted_gateway

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


@pytest.fixture(scope="module")
def gateway() -> Iterator[ScriptedGateway]:
    env = {"GATEWAY_HEARTBEAT_SEC": "0.3"}
    with scripted_gateway(SCRIPT, "anthropic_messages,models", api_key=API_KEY, env=env, prefix="lgw-am-") as gw:
        yield gw
    assert "Traceback" not in gw.handler_log, gw.handler_log
