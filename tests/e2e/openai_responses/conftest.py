"""The script for a real sidecar (scripted backend) and a real ``handler openai_responses`` process, on loopback.

The script picks a turn by a regex on the newest message, so each test chooses its scenario through the text
it sends; ``tests.scripted`` starts and stops the processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.scripted import ScriptedGateway, scripted_gateway

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


@pytest.fixture(scope="module")
def gateway() -> Iterator[ScriptedGateway]:
    env = {"GATEWAY_HEARTBEAT_SEC": str(HEARTBEAT_SEC)}
    with scripted_gateway(SCRIPT, "openai_responses", api_key=API_KEY, env=env, prefix="lgr-") as gw:
        yield gw
