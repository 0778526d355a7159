"""count_tokens on the real renderer and Qwen tokenizer: equal to the turn's usage, growing with what it counts,
and never held by the chat in-flight limit (docs/dialects.md §5)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.support.gateway import Gateway

ANTHROPIC = {"anthropic-version": "2023-06-01"}
TOOLS = [
    {"name": "Bash", "description": "Run a shell command.", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
    {"name": "Read", "description": "Read a file.", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
]  # fmt: skip
SLOW = {"turns": [{"match": "hold the slot", "reply": [{"text": "holding "}, {"delay_ms": 3000}, {"text": "done"}]}]}


def count(gw: Gateway, body: dict[str, Any]) -> int:
    r = httpx.post(gw.url + "/v1/messages/count_tokens?beta=true", json=body, headers=ANTHROPIC, timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["input_tokens"])


def test_count_tokens_equals_the_turns_input_tokens_and_grows(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory()
    body: dict[str, Any] = {
        "model": "claude-x",
        "system": [{"type": "text", "text": "You are a careful assistant.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"},
                                         {"type": "text", "text": "and now?"}]},
        ],
        "tools": TOOLS,
    }  # fmt: skip
    counted = count(gw, body)
    answer = httpx.post(gw.url + "/v1/messages", json={**body, "max_tokens": 50}, headers=ANTHROPIC, timeout=30).json()
    usage = answer["usage"]
    assert usage["cache_read_input_tokens"] == 0, "a fresh session holds nothing"
    assert counted == usage["input_tokens"] > 0

    assert count(gw, {**body, "tools": TOOLS[:1]}) < counted, "fewer tools, fewer tokens"
    longer = {**body, "system": body["system"] + [{"type": "text", "text": "Answer in French. " * 20}]}
    assert count(gw, longer) > counted, "a longer system prompt, more tokens"
    assert count(gw, {**body, "tools": []}) < count(gw, {**body, "tools": TOOLS[:1]})


def test_count_tokens_is_not_held_by_the_in_flight_limit(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory(scenario=SLOW, env={"GATEWAY_MAX_IN_FLIGHT": "1", "GATEWAY_QUEUE_TIMEOUT_SEC": "0.3"})
    started = threading.Event()

    def hold() -> None:
        body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hold the slot"}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if "holding" in line:
                    started.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert started.wait(20)
    chat = httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "x"}]}, timeout=10)  # fmt: skip
    assert chat.status_code == 429, "the only turn slot is taken"
    began = time.monotonic()
    for _ in range(10):
        assert count(gw, {"model": "m", "messages": [{"role": "user", "content": "how many tokens?"}]}) > 0
    assert time.monotonic() - began < 3, "count_tokens never waits for a turn slot"
    thread.join(30)
