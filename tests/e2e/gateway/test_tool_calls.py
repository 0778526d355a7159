"""Tool calling through Lingma on Chat Completions: the contract, recognisers, results, reasoning, agent mode.

References: docs/architecture.md §7, docs/lingma-protocol.md §7 and §10.5, docs/dialects.md §2.4 and §2.5.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.gateway.test_chat_completions import assert_chat_stream, chunks_of
from tests.support.gateway import Gateway

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SHELL = {
    "type": "function",
    "function": {
        "name": "run",
        "description": "Run a shell command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
            "required": ["command"],
        },
    },
}
FENCED = 'Here is code:\n```python\nprint("hi")\n```\nand data:\n```json\n{"a": [1, 2], "b": "x"}\n```\nDone.'

SCENARIO = {
    "turns": [
        {"match": "weather in Paris", "reply": [
            {"text": "Let me check. "},
            {"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}, "format": "contract"}},
        ]},
        {"match": "<tool_response", "reply": [{"text": "The tool says it is sunny, 21C in Paris."}]},
        {"match": "positional please", "reply": [
            {"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}, "format": "tool_code_positional"}},
        ]},
        {"match": "two calls", "chunks": [
            "<tool_", "call>\n{\"name\": \"run\", \"argu", "ments\": {\"command\": \"ls -la\"}}\n</tool_call>\n",
            "```tool_code\nget_weather(city=\"Rome\")\n``", "`",
        ], "reply": [{"text": "x"}]},
        {"match": "prose only", "reply": [{"text": "I would rather just talk."}]},
        {"match": "fenced code", "chunk_size": 5, "reply": [{"text": FENCED}]},
        {"match": "think first", "reply": [{"think": "pondering deeply"}, {"text": "The answer is 42."}]},
        {"match": "agent task", "reply": [
            {"text": "Reading. "}, {"tool_invoke": {"name": "read_file", "parameters": {"path": "x"}}}, {"text": "Done."},
        ]},
    ]
}  # fmt: skip


@pytest.fixture
def gw(gateway_factory: Any) -> Gateway:
    return gateway_factory(scenario=SCENARIO)  # type: ignore[no-any-return]


def post(gw: Gateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60)


def test_full_loop_with_the_openai_sdk(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="auto", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert choice.message.content == "Let me check."
    # The contract reached Lingma in the prompt.
    assert "<tool_call>" in gw.asks()[-1]["questionText"] and "get_weather" in gw.asks()[-1]["questionText"]

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
    second = client.chat.completions.create(model="auto", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "The tool says it is sunny, 21C in Paris."
    last = gw.asks()[-1]
    assert "<tool_response" in last["questionText"] and "sunny, 21C" in last["questionText"]
    # The follow-up reused the session: only the new turn (the tool result) went upstream.
    assert last["isReply"] is True and "What is the weather" not in last["questionText"]


def test_streamed_tool_call_deltas(gw: Gateway) -> None:
    body = {"model": "auto", "stream": True, "tools": [WEATHER, SHELL],
            "messages": [{"role": "user", "content": "two calls at once"}]}  # fmt: skip
    raw = post(gw, body).text
    chunks = assert_chat_stream(raw)
    deltas = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    firsts = [d for d in deltas if "id" in d]
    assert [d["index"] for d in firsts] == [0, 1]
    for d in deltas:
        if "id" in d:
            assert d["type"] == "function" and d["function"]["arguments"] == ""
        else:
            assert set(d) == {"index", "function"} and set(d["function"]) == {"arguments"}
    args = {i: "".join(d["function"]["arguments"] for d in deltas if d["index"] == i) for i in (0, 1)}
    assert [f["function"]["name"] for f in firsts] == ["run", "get_weather"]
    assert json.loads(args[0]) == {"command": "ls -la"} and json.loads(args[1]) == {"city": "Rome"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # No stray text: everything in the reply was a call.
    assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]).strip()

    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    body.pop("stream")
    with client.chat.completions.stream(**body) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("run", {"command": "ls -la"}),
        ("get_weather", {"city": "Rome"}),
    ]


def test_forced_choice_with_a_positional_tool_code_call(gw: Gateway) -> None:
    body = {"model": "auto", "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "messages": [{"role": "user", "content": "positional please"}]}  # fmt: skip
    result = post(gw, body).json()
    message = result["choices"][0]["message"]
    assert message["content"] is None and result["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    assert 'MUST call the tool "get_weather"' in gw.asks()[-1]["questionText"]


def test_forced_choice_answered_with_prose_is_asked_again_once_then_fails(gw: Gateway) -> None:
    body = {"model": "auto", "tools": [WEATHER], "tool_choice": "required",
            "messages": [{"role": "user", "content": "prose only"}]}  # fmt: skip
    before = len(gw.asks())
    r = post(gw, body)
    assert r.status_code == 502
    assert r.json()["error"]["type"] == "server_error" and "tool" in r.json()["error"]["message"]
    asks = gw.asks()[before:]
    assert len(asks) == 2, "asked again exactly once"
    assert asks[1]["isReply"] is True and "did not call a tool" in asks[1]["questionText"]
    # Streamed: nothing was committed before the retry, so the failure is still an HTTP status.
    assert post(gw, {**body, "stream": True}).status_code == 502


def test_fenced_code_that_is_not_a_call_streams_byte_for_byte(gw: Gateway) -> None:
    body = {"model": "auto", "stream": True, "tools": [WEATHER, SHELL],
            "messages": [{"role": "user", "content": "fenced code sample"}]}  # fmt: skip
    chunks = assert_chat_stream(post(gw, body).text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == FENCED
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_think_markers_go_to_reasoning_content(gw: Gateway) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "think first"}]}
    message = post(gw, body).json()["choices"][0]["message"]
    assert message["content"] == "The answer is 42."
    assert message["reasoning_content"] == "pondering deeply"
    chunks = chunks_of(post(gw, {**body, "stream": True}).text)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
    assert content == "The answer is 42." and reasoning == "pondering deeply"
    assert "think" not in content and "````" not in content


def test_agent_mode_with_a_tool_invoke_finishes(gw: Gateway) -> None:
    body = {"model": "lingma-agent", "messages": [{"role": "user", "content": "agent task"}]}
    r = post(gw, body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Reading. Done."
    journal = gw.journal_lines()
    ask = [e for e in journal if e.get("dir") == "in" and e.get("method") == "chat/ask"][-1]["params"]
    assert ask["mode"] == "agent"
    assert ask["pluginPayloadConfig"] == {"isEnableProjectRule": False, "isEnableAskAgent": False,
                                          "isEnableAutoMemory": False}  # fmt: skip
    invoke = next(e for e in journal if e.get("dir") == "out" and e.get("method") == "tool/invoke")
    acks = [e for e in journal if e.get("dir") == "in" and e.get("id") == invoke["id"] and "result" in e]
    assert acks, "the tool/invoke request was acknowledged"
    result = next(e for e in journal if e.get("dir") == "in" and e.get("method") == "tool/invokeResult")
    assert result["params"]["success"] is False
    assert result["params"]["toolCallId"] == invoke["params"]["toolCallId"]


def test_tool_forwarding_can_be_turned_off(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory(scenario=SCENARIO, env={"TOOL_FORWARD_ENABLED": "false"})
    body = {"model": "auto", "tools": [WEATHER], "messages": [{"role": "user", "content": "weather in Paris?"}]}
    result = post(gw, body).json()
    assert "<tool_call>" not in gw.asks()[-1]["questionText"]
    assert result["choices"][0]["finish_reason"] == "stop" and "tool_calls" not in result["choices"][0]["message"]


def _split_turns() -> tuple[list[dict[str, Any]], list[str]]:
    from tests.unit.tools.test_chat_accumulator import REPLIES

    turns, names = [], []
    for fmt, reply in sorted(REPLIES.items()):
        for k, (a, b) in enumerate([(len(reply) // 3, 2 * len(reply) // 3), (7, len(reply) - 5)]):
            name = f"split {fmt} {k}"
            turns.append({"match": name, "chunks": [reply[:a], reply[a:b], reply[b:]], "reply": [{"text": "x"}]})
            names.append(name)
    return turns, names


SPLIT_TURNS, SPLIT_NAMES = _split_turns()


def test_split_calls_end_to_end_over_http(gateway_factory: Any) -> None:
    from tests.unit.tools.test_chat_accumulator import CALLS, TOOLS

    gw: Gateway = gateway_factory(scenario={"turns": SPLIT_TURNS})
    tools = [{"type": "function", "function": {"name": t.name, "parameters": json.loads(t.parameters)}} for t in TOOLS]
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    for name in SPLIT_NAMES:
        with client.chat.completions.stream(
            model="auto",
            tools=tools,
            messages=[{"role": "user", "content": name}],  # type: ignore[arg-type,list-item]
        ) as stream:
            final = stream.get_final_completion()
        calls = [(c.function.name, json.loads(c.function.arguments)) for c in final.choices[0].message.tool_calls or []]
        assert calls == CALLS, name
        assert final.choices[0].finish_reason == "tool_calls"


def test_the_allowlist_decides_which_tools_reach_lingma(gateway_factory: Any) -> None:
    """The sidecar applies TOOL_ALLOWLIST, for every dialect alike."""
    gw: Gateway = gateway_factory(scenario=SCENARIO, env={"TOOL_ALLOWLIST": "run", "API_KEYS": "k"})
    auth = {"authorization": "Bearer k"}
    chat = {"model": "auto", "tools": [WEATHER, SHELL], "messages": [{"role": "user", "content": "hello"}]}
    assert httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=auth, timeout=30).status_code == 200
    anthropic_body = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}],
                      "tools": [{"name": "get_weather", "input_schema": {"type": "object"}},
                                {"name": "run", "input_schema": {"type": "object"}}]}  # fmt: skip
    assert httpx.post(gw.url + "/v1/messages", json=anthropic_body, headers=auth, timeout=30).status_code == 200
    responses_body = {"model": "m", "input": "hello", "tools": [{"type": "function", "name": "get_weather"},
                                                                {"type": "function", "name": "run"}]}  # fmt: skip
    assert httpx.post(gw.url + "/v1/responses", json=responses_body, headers=auth, timeout=30).status_code == 200
    named = {**chat, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    refused = httpx.post(gw.url + "/v1/chat/completions", json=named, headers=auth, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tool_choice"
    asks = gw.asks()[-3:]
    for ask in asks:
        assert '"name":"run"' in ask["questionText"].replace(" ", "")
        assert "get_weather" not in ask["questionText"]
