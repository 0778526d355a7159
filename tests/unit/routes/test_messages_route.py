"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` in process, checked against the stream checklist."""

from __future__ import annotations

from typing import Any

from tests.support.anthropic_sse import check_stream, comparable, sdk_final_message

from .conftest import ANTHROPIC_AUTH, LONG_ARGUMENTS, gateway

PATH = "/v1/messages"
TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "required": ["command"]}}]


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4", "max_tokens": 1024, "messages": [{"role": "user", "content": text}], **extra}


async def test_a_plain_answer_with_usage() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TEXT"), headers=ANTHROPIC_AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "message" and out["role"] == "assistant" and out["id"].startswith("msg_")
    assert out["content"] == [{"type": "text", "text": "Hello there!"}]
    assert out["stop_reason"] == "end_turn"
    assert out["usage"]["input_tokens"] + out["usage"]["cache_read_input_tokens"] == 30
    assert out["usage"]["cache_read_input_tokens"] == 10
    assert r.headers["request-id"]


async def test_stream_and_create_give_the_same_message() -> None:
    async with gateway() as client:
        created = await client.post(PATH, json=body("TURN-TOOL", tools=TOOLS), headers=ANTHROPIC_AUTH)
        streamed = await client.post(PATH, json=body("TURN-TOOL", tools=TOOLS, stream=True), headers=ANTHROPIC_AUTH)
    summary = check_stream(streamed.content, model="claude-sonnet-4", schemas={"Bash": TOOLS[0]["input_schema"]})
    assert summary.stop_reason == "tool_use"
    final = sdk_final_message(streamed.content)
    assert comparable(final, drop_ids=True) == comparable(created.json(), drop_ids=True)
    tool = [b for b in created.json()["content"] if b["type"] == "tool_use"]
    assert tool[0]["name"] == "Bash" and tool[0]["input"] == LONG_ARGUMENTS


async def test_thinking_blocks_only_when_asked_for() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    async with gateway() as client:
        plain = await client.post(PATH, json=body("TURN-THINK"), headers=ANTHROPIC_AUTH)
        asked = await client.post(PATH, json=body("TURN-THINK", thinking=thinking), headers=ANTHROPIC_AUTH)
    assert [b["type"] for b in plain.json()["content"]] == ["text"]
    blocks = asked.json()["content"]
    assert [b["type"] for b in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"] == "Pondering deeply." and blocks[0]["signature"]


async def test_a_failure_after_commit_is_an_error_event_last() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EXPLODE", stream=True), headers=ANTHROPIC_AUTH)
    assert r.status_code == 200
    summary = check_stream(r.content)
    assert summary.error is not None and summary.error["message"] == "boom from upstream"
    assert summary.error["type"] == "api_error"


async def test_a_failure_before_commit_is_a_429_in_the_anthropic_envelope() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EARLY-FAIL", stream=True), headers=ANTHROPIC_AUTH)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    out = r.json()
    assert out["type"] == "error" and out["error"]["type"] == "rate_limit_error"


async def test_a_slow_turn_gets_pings_before_content() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-SLOW", stream=True), headers=ANTHROPIC_AUTH)
    summary = check_stream(r.content)
    assert summary.pings >= 1
    assert r.text.index("event: ping") < r.text.index("late")


async def test_count_tokens_asks_the_sidecar_and_never_runs_a_turn() -> None:
    payload = {"model": "claude-sonnet-4", "messages": [{"role": "user", "content": "one two three four"}]}
    async with gateway() as client:
        r = await client.post(PATH + "/count_tokens", json=payload, headers=ANTHROPIC_AUTH)
        stats = await client.get("/internal/stats", headers=ANTHROPIC_AUTH)
    assert r.status_code == 200
    assert r.json() == {"input_tokens": 4}  # the scripted backend counts words
    assert stats.json()["requests"].get("started", 0) == 0
    assert stats.json()["requests"]["count_tokens"] == 1


async def test_the_beta_query_of_claude_code_is_accepted() -> None:
    async with gateway() as client:
        r = await client.post(PATH + "?beta=true", json=body("TURN-TEXT"), headers=ANTHROPIC_AUTH)
    assert r.json()["content"][0]["text"] == "Hello there!"
