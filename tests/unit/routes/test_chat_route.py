"""``POST /v1/chat/completions`` in process: streamed and not, tools, reasoning, failures before and after commit."""

from __future__ import annotations

import json
from typing import Any

from .conftest import AUTH, LONG_ARGUMENTS, gateway, sse_data

PATH = "/v1/chat/completions"


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


TOOLS = [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]


def chunks(text: str) -> list[dict[str, Any]]:
    data = sse_data(text)
    assert data[-1] == "[DONE]", data[-3:]
    assert data.count("[DONE]") == 1
    return [json.loads(d) for d in data[:-1]]


async def test_a_plain_answer_with_usage_and_instance() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TEXT"), headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == "gpt-4o"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Hello there!", "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 30
    assert out["usage"]["completion_tokens"] == 3
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    assert r.headers["x-lingma-instance"] == "s0"


async def test_a_streamed_answer_has_one_role_chunk_the_text_and_one_done() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TEXT", stream=True), headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-lingma-instance"] == "s0"
    got = chunks(r.text)
    assert got[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert sum(1 for c in got for ch in c["choices"] if "role" in ch["delta"]) == 1
    assert "".join(ch["delta"].get("content") or "" for c in got for ch in c["choices"]) == "Hello there!"
    assert [ch["finish_reason"] for c in got for ch in c["choices"] if ch["finish_reason"]] == ["stop"]
    assert len({c["id"] for c in got}) == 1


async def test_include_usage_adds_a_usage_chunk_before_done() -> None:
    async with gateway() as client:
        r = await client.post(
            PATH, json=body("TURN-TEXT", stream=True, stream_options={"include_usage": True}), headers=AUTH
        )
    got = chunks(r.text)
    assert got[-1]["choices"] == []
    assert got[-1]["usage"]["prompt_tokens"] == 30
    assert got[-1]["usage"]["completion_tokens"] == 3


async def test_a_tool_call_answer_carries_exact_arguments() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TOOL", tools=TOOLS), headers=AUTH)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == LONG_ARGUMENTS
    assert call["id"].startswith("call_")


async def test_a_streamed_tool_call_joins_back_to_its_arguments() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-TOOL", stream=True, tools=TOOLS), headers=AUTH)
    deltas = [tc for c in chunks(r.text) for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert len(deltas) > 1  # long arguments arrive in pieces
    assert {d["index"] for d in deltas} == {0}
    assert deltas[0]["function"]["name"] == "Bash" and deltas[0]["id"].startswith("call_")
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == LONG_ARGUMENTS


async def test_reasoning_streams_as_reasoning_content() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-THINK", stream=True), headers=AUTH)
    deltas = [ch["delta"] for c in chunks(r.text) for ch in c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "Pondering deeply."
    assert "".join(d.get("content") or "" for d in deltas) == "Forty-two."


async def test_a_failure_before_any_content_is_an_http_error_with_retry_after() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EARLY-FAIL", stream=True), headers=AUTH)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"
    assert r.json()["error"]["message"] == "slow down"


async def test_a_failure_after_commit_ends_the_stream_with_an_error_then_done() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EXPLODE", stream=True), headers=AUTH)
    assert r.status_code == 200
    data = sse_data(r.text)
    assert data[-1] == "[DONE]" and data.count("[DONE]") == 1
    error = json.loads(data[-2])
    assert error["error"]["message"] == "boom from upstream"
    assert error["error"]["code"] == "upstream_error"
    text = "".join(ch["delta"].get("content") or "" for d in data[:-2] for ch in json.loads(d).get("choices", []))
    assert text == "partial answer"


async def test_a_non_streamed_failure_is_a_502() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-EXPLODE"), headers=AUTH)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_error"


async def test_a_slow_turn_gets_keep_alive_comments_before_its_text() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-SLOW", stream=True), headers=AUTH)
    assert r.status_code == 200
    first_text = r.text.index("late")
    assert ": keep-alive\n\n" in r.text[:first_text]
    assert chunks(r.text)[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_length_finish_reason_passes_through() -> None:
    async with gateway() as client:
        r = await client.post(PATH, json=body("TURN-CUT"), headers=AUTH)
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["choices"][0]["message"]["content"] == "This is trunc"


async def test_an_unmatched_message_is_echoed_by_the_script() -> None:
    """The conversation reaches the backend intact: the scripted echo repeats the newest message."""
    async with gateway() as client:
        r = await client.post(PATH, json=body("nothing scripted: ünïcode ✓"), headers=AUTH)
    assert r.json()["choices"][0]["message"]["content"] == "echo: nothing scripted: ünïcode ✓"
