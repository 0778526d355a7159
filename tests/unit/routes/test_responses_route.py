"""``POST /v1/responses`` (and ``/responses``) in process: items, event order, failures, the WebSocket refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.responses_sse import check_stream

from .conftest import AUTH, LONG_ARGUMENTS, PATCH, gateway

PATH = "/v1/responses"
TOOLS = [
    {"type": "function", "name": "Bash", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch", "description": "edit files"},
]


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-5-codex", "input": [{"role": "user", "content": text}], **extra}


async def test_a_plain_answer_is_one_message_item() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TEXT"), headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "response" and out["status"] == "completed" and out["id"].startswith("resp_")
    [item] = out["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert [c["text"] for c in item["content"]] == ["Hello there!"]
    assert out["usage"]["input_tokens"] == 30
    assert out["usage"]["input_tokens_details"]["cached_tokens"] == 10
    assert r.headers["x-lingma-instance"] == "s0"


async def test_a_streamed_answer_passes_the_stream_checklist() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TEXT", stream=True), headers=AUTH)
    checked = check_stream(r.content, model="gpt-5-codex")
    assert checked.types[-1] == "response.completed"
    deltas = [f.data["delta"] for f in checked.frames if f.data["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there!"
    assert checked.response["usage"]["output_tokens"] == 3


async def test_function_and_custom_tool_calls_become_their_items() -> None:
    async with gateway() as client:
        tool = await client.post(PATH, json=body("TURN-TOOL", tools=TOOLS), headers=AUTH)
        patch = await client.post(PATH, json=body("TURN-PATCH", tools=TOOLS, stream=True), headers=AUTH)
    items = tool.json()["output"]
    assert [i["type"] for i in items] == ["message", "function_call"]
    assert items[1]["name"] == "Bash" and json.loads(items[1]["arguments"]) == LONG_ARGUMENTS
    checked = check_stream(patch.content)
    [call] = [i for i in checked.done_items if i["type"] == "custom_tool_call"]
    assert call["name"] == "apply_patch" and call["input"] == PATCH


async def test_reasoning_is_an_item_before_the_message_when_asked_for() -> None:
    async with gateway() as client:
        plain = await client.post(PATH, json=body("TURN-THINK", stream=True), headers=AUTH)
        asked = await client.post(
            PATH, json=body("TURN-THINK", stream=True, reasoning={"effort": "high"}), headers=AUTH
        )
    assert [i["type"] for i in check_stream(plain.content).done_items] == ["message"]
    assert [i["type"] for i in check_stream(asked.content).done_items] == ["reasoning", "message"]


async def test_a_failure_after_commit_is_response_failed() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EXPLODE", stream=True), headers=AUTH)
    assert r.status_code == 200
    checked = check_stream(r.content)
    assert checked.types[-1] == "response.failed"
    assert checked.response["error"]["message"] == "boom from upstream"


async def test_a_failure_before_commit_is_an_http_429_in_the_openai_envelope() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EARLY-FAIL", stream=True), headers=AUTH)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"


async def test_a_cut_answer_is_incomplete() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-CUT"), headers=AUTH)
    assert r.json()["status"] == "incomplete"
    assert r.json()["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unknown_previous_response_is_a_400_naming_the_parameter(stream: bool) -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-NO-PREVIOUS", stream=stream), headers=AUTH)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "previous_response_not_found" and error["param"] == "previous_response_id"


async def test_the_short_path_serves_the_same_route() -> None:
    async with gateway() as client:
        r = await client.post("/responses", json=body("TURN-TEXT"), headers=AUTH)
    assert r.json()["output"][0]["content"][0]["text"] == "Hello there!"


@pytest.mark.parametrize("path", [PATH, "/responses"])
async def test_a_get_is_refused_with_426_and_an_openai_error(path: str) -> None:
    async with gateway() as client:
        r = await client.get(path, headers=AUTH)
    assert r.status_code == 426
    assert r.json()["error"]["code"] == "websocket_not_supported"
