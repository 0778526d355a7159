"""``/v1/responses`` over real HTTP: a sidecar and a handler process, driven by the openai SDK and by raw httpx.

References: docs/dialects.md §3.3-§3.5 (the stream and its terminal events).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import zstandard
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.openai_responses.conftest import API_KEY, PATCH
from tests.support.responses_sse import CAPTURES, check_stream
from tests.support.scripted import ScriptedGateway

CODEX_CAPTURES = sorted(CAPTURES.glob("codex_*.json"))
DROPPED_HEADERS = {"host", "content-length", "authorization"}


def client(gateway: ScriptedGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=API_KEY, max_retries=0, timeout=20)


def without_ids(value: Any) -> Any:
    """Output with per-response parts (item ids, timestamps) and the stream helper's ``parsed`` removed."""
    if isinstance(value, dict):
        return {
            k: without_ids(v) for k, v in value.items() if k not in ("id", "created_at", "parsed", "parsed_arguments")
        }
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def raw_stream(gateway: ScriptedGateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/responses",
        json={"model": "gpt-5.5", "stream": True, **body},
        headers={**gateway.headers, **headers},
        timeout=20,
    )


TOOLS: Any = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
        "strict": False,
    },
    {"type": "custom", "name": "apply_patch", "description": "Edit files. FREEFORM."},
    {"type": "web_search"},
]


@pytest.mark.parametrize(
    ("prompt", "types"),
    [
        ("Say hello", ["message"]),
        ("Run echo", ["function_call"]),
        ("mixed please", ["message", "function_call"]),
        ("two calls", ["function_call", "function_call"]),
        ("patch please", ["custom_tool_call"]),
        ("think first", ["reasoning", "message"]),
    ],
)
def test_stream_helper_and_create_give_the_same_output(gateway: ScriptedGateway, prompt: str, types: list[str]) -> None:
    sdk = client(gateway)
    kwargs: dict[str, Any] = {"model": "gpt-5.5", "input": prompt, "tools": TOOLS, "reasoning": {"summary": "auto"}}
    with sdk.responses.stream(**kwargs) as stream:
        streamed = stream.get_final_response()
    created = sdk.responses.create(**kwargs)
    assert [item.type for item in streamed.output] == types
    assert streamed.status == created.status == "completed"
    assert streamed.model == created.model == "gpt-5.5"
    assert without_ids(streamed.model_dump()["output"]) == without_ids(created.model_dump()["output"])
    assert created.usage is not None and created.usage.total_tokens == 46
    assert created.usage.input_tokens_details.cached_tokens == 8
    if prompt == "patch please":
        item = created.output[0]
        assert item.type == "custom_tool_call" and item.input == PATCH and item.call_id == "call_p1"
    if prompt == "Run echo":
        item = created.output[0]
        assert item.type == "function_call" and item.call_id == "call_e1" and item.id == "fc_e1"
        assert json.loads(item.arguments) == {"cmd": "echo hi-from-tool"}


def test_raw_create_stream_yields_every_event_in_order(gateway: ScriptedGateway) -> None:
    stream: Any = client(gateway).responses.create(model="gpt-5.5", input="mixed please", tools=TOOLS, stream=True)
    events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    types = [e.type for e in events]
    assert types.count("response.output_item.added") == types.count("response.output_item.done") == 2
    assert "response.function_call_arguments.done" in types and "response.output_text.delta" in types


def test_every_stream_passes_the_checklist_on_the_wire(gateway: ScriptedGateway) -> None:
    for prompt in ("Say hello", "Run echo", "mixed please", "two calls", "patch please", "think first", "cut short"):
        response = raw_stream(gateway, {"input": prompt, "tools": TOOLS, "reasoning": {"effort": "low"}})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"].startswith("no-cache")
        check_stream(response.content, model="gpt-5.5")


def test_slow_start_commits_with_created_then_comments(gateway: ScriptedGateway) -> None:
    response = raw_stream(gateway, {"input": "slow start"})
    checked = check_stream(response.content, model="gpt-5.5")
    assert checked.comments >= 1
    assert checked.types[-1] == "response.completed"
    text = client(gateway).responses.create(model="gpt-5.5", input="slow start", stream=False).output_text
    assert text == "finally"


def test_mid_stream_failure_is_response_failed(gateway: ScriptedGateway) -> None:
    sdk = client(gateway)
    events = list(sdk.responses.create(model="gpt-5.5", input="break midway", stream=True))
    assert events[-1].type == "response.failed"
    assert "response.completed" not in [e.type for e in events]
    failed = events[-1].response
    assert failed.error is not None and failed.error.code == "server_error"
    assert failed.error.message == "Lingma failed mid-turn"
    with pytest.raises(RuntimeError), sdk.responses.stream(model="gpt-5.5", input="break midway") as stream:
        stream.get_final_response()
    check_stream(raw_stream(gateway, {"input": "break midway"}).content, model="gpt-5.5")


def test_mid_stream_rate_limit_carries_the_retry_hint(gateway: ScriptedGateway) -> None:
    checked = check_stream(raw_stream(gateway, {"input": "limit midway"}).content)
    error = checked.response["error"]
    assert error["code"] == "rate_limit_exceeded" and "try again in 4s" in error["message"]


def test_non_stream_failure_is_an_http_status(gateway: ScriptedGateway) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client(gateway).responses.create(model="gpt-5.5", input="break midway")
    assert info.value.status_code == 502


def test_failure_before_commit_is_an_http_error_in_the_openai_envelope(gateway: ScriptedGateway) -> None:
    for stream in (True, False):
        response = httpx.post(
            f"{gateway.base_url}/v1/responses",
            json={"model": "m", "input": "busy now", "stream": stream},
            headers=gateway.headers,
            timeout=20,
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_length_is_incomplete(gateway: ScriptedGateway) -> None:
    created = client(gateway).responses.create(model="gpt-5.5", input="cut short")
    assert created.status == "incomplete"
    assert created.incomplete_details is not None and created.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_previous_response_id_is_400(gateway: ScriptedGateway, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway).responses.create(
            model="gpt-5.5", input="continue from nowhere", previous_response_id="resp_missing", stream=stream
        )
    assert info.value.status_code == 400
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compressed_bodies_are_accepted(gateway: ScriptedGateway, encoding: str) -> None:
    body = json.dumps({"model": "gpt-5.5", "input": "Say hello", "stream": True}).encode()
    packed = gzip.compress(body) if encoding == "gzip" else zstandard.ZstdCompressor().compress(body)
    response = httpx.post(
        f"{gateway.base_url}/v1/responses",
        content=packed,
        headers={**gateway.headers, "content-type": "application/json", "content-encoding": encoding},
        timeout=20,
    )
    assert response.status_code == 200
    checked = check_stream(response.content, model="gpt-5.5")
    assert checked.done_items[0]["content"][0]["text"] == "Hello there!"


@pytest.mark.parametrize("path", CODEX_CAPTURES, ids=[p.stem for p in CODEX_CAPTURES])
def test_each_codex_capture_is_answered(gateway: ScriptedGateway, path: Path) -> None:
    captured = json.loads(path.read_text())
    headers = {k: v for k, v in captured["headers"].items() if k.lower() not in DROPPED_HEADERS}
    response = httpx.post(
        f"{gateway.base_url}{captured['path']}",
        content=json.dumps(captured["body"]).encode(),
        headers={**headers, **gateway.headers},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    checked = check_stream(response.content, model=captured["body"]["model"])
    assert checked.types[-1] == "response.completed"
    expected = {"Say hello": "message", "Run echo": "function_call"}
    newest = captured["body"]["input"][-1]
    kind = expected.get(newest.get("content", [{}])[0].get("text", "")) if newest["type"] == "message" else "message"
    assert [i["type"] for i in checked.done_items] == [kind]


def test_the_short_path_and_auth(gateway: ScriptedGateway) -> None:
    ok = httpx.post(
        f"{gateway.base_url}/responses", json={"model": "m", "input": "Say hello"}, headers=gateway.headers, timeout=20
    )
    assert ok.status_code == 200 and ok.json()["object"] == "response" and ok.json()["status"] == "completed"
    denied = httpx.post(f"{gateway.base_url}/v1/responses", json={"model": "m", "input": "Say hello"}, timeout=20)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    bad = httpx.post(f"{gateway.base_url}/v1/responses", content=b"{", headers=gateway.headers, timeout=20)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/responses", "/responses"])
def test_websocket_upgrade_is_refused_fast(gateway: ScriptedGateway, path: str) -> None:
    async def attempt() -> InvalidStatus:
        url = gateway.base_url.replace("http://", "ws://") + path
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers=gateway.headers, open_timeout=5):
                pass
        return info.value

    started = time.monotonic()
    refused = asyncio.run(attempt())
    assert time.monotonic() - started < 1.0
    assert refused.response.status_code == 426
    assert json.loads(refused.response.body or b"{}")["error"]["code"] == "websocket_not_supported"

    upgrade = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13"}
    upgrade["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    started = time.monotonic()
    response = httpx.get(gateway.base_url + path, headers={**gateway.headers, **upgrade}, timeout=5)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 426 and response.json()["error"]["type"] == "invalid_request_error"
    plain = httpx.get(gateway.base_url + path, headers=gateway.headers, timeout=5)
    assert plain.status_code == 426 and "error" in plain.json()
