"""Every route in process: Litestar's test client over the handlers' app, the app's client over the in-process
transport, and a real SidecarServer on the scripted backend behind it.

The script picks a turn by a regex on the newest message, so each test chooses its scenario by what it says.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from litestar.testing import AsyncTestClient

from common.settings import Settings
from handlers.app import ROUTES, create_app
from handlers.context import GatewayContext
from tests.support.inprocess import InProcessSidecar, scripted_sidecar

API_KEY = "k-unit"
AUTH = {"authorization": f"Bearer {API_KEY}"}
ANTHROPIC_AUTH = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
HEARTBEAT_SEC = 0.1


def _started(total: int, cached: int) -> dict[str, Any]:
    return {"t": "started", "model": "scripted", "input_tokens": total, "cached_input_tokens": cached, "instance": "s0"}


def _usage(total: int, cached: int, output: int) -> dict[str, int]:
    return {"input_tokens": total, "cached_input_tokens": cached, "output_tokens": output}


def _call(
    index: int, call_id: str, name: str, arguments: dict[str, Any] | str, kind: str = "function"
) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"t": "tool_call", "index": index, "id": call_id, "name": name, "arguments": args, "kind": kind}


LONG_ARGUMENTS = {"command": "echo " + "x" * 150, "note": 'quotes " and \\ and é'}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"

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
                _call(0, "t1", "Bash", LONG_ARGUMENTS),
                {"t": "finished", "reason": "tool_calls", "usage": _usage(40, 0, 12)},
            ],
        },
        {
            "match": "TURN-PATCH",
            "events": [_call(0, "p1", "apply_patch", PATCH, "custom"), {"t": "finished", "reason": "tool_calls"}],
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
        {
            "match": "TURN-SLOW",
            "events": [{"t": "sleep", "ms": 350}, {"t": "text", "text": "late"}, {"t": "finished"}],
        },
        {
            "match": "TURN-CUT",
            "events": [{"t": "text", "text": "This is trunc"}, {"t": "finished", "reason": "length"}],
        },
        {
            "match": "TURN-NO-PREVIOUS",
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


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"api_keys": (API_KEY,), "gateway_heartbeat_sec": HEARTBEAT_SEC}
    return Settings(**{**base, **overrides})


@contextlib.asynccontextmanager
async def gateway(
    *,
    routes: Sequence[str] = ROUTES,
    script: dict[str, Any] | None = None,
    sidecar: InProcessSidecar | None = None,
    context: GatewayContext | None = None,
    **overrides: Any,
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The handlers' app in process; ``overrides`` are settings fields."""
    side = sidecar or scripted_sidecar(SCRIPT if script is None else script)
    config = context.settings if context else settings(**overrides)
    app = create_app(config, routes, client=side.client, context=context)
    try:
        async with AsyncTestClient(app) as client:
            yield client
    finally:
        await side.aclose()


def sse_data(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[6:] for line in body.split("\n") if line.startswith("data: ")]


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` for each named SSE event of a body."""
    out: list[tuple[str, dict[str, Any]]] = []
    for block in body.split("\n\n"):
        lines = block.split("\n")
        names = [line[7:] for line in lines if line.startswith("event: ")]
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if names and data:
            out.append((names[0], json.loads(data[0])))
    return out
