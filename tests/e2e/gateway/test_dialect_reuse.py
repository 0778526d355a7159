"""Session reuse through the Responses and Anthropic dialects, including ``previous_response_id``."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway

SHELL = {
    "type": "function",
    "name": "exec_command",
    "description": "Run a command.",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
SCENARIO = {
    "turns": [
        {"match": "list files", "reply": [
            {"think": "a shell call will do"},
            {"tool_call": {"name": "exec_command", "arguments": {"cmd": "ls"}, "format": "contract"}},
        ]},
        {"match": "a.txt b.txt", "reply": [{"text": "There are two files."}]},
    ]
}  # fmt: skip


@pytest.fixture
def gw(gateway_factory: Any) -> Gateway:
    return gateway_factory(scenario=SCENARIO)  # type: ignore[no-any-return]


def test_codex_style_full_history_reuses_the_session(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    first_input: list[Any] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}
    ]
    first = client.responses.create(
        model="gpt-5", instructions="You are Codex.", input=first_input, tools=[SHELL], reasoning={"effort": "low"}
    )
    items = [item.model_dump(exclude_none=True) for item in first.output]
    assert [i["type"] for i in items] == ["reasoning", "function_call"]
    call = items[1]
    # Codex resends everything: its input, our output items (reasoning included), then the tool output.
    second_input = [
        *first_input,
        *items,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt b.txt"},
    ]
    second = client.responses.create(model="gpt-5", instructions="You are Codex.", input=second_input, tools=[SHELL])
    assert second.output_text == "There are two files."
    ask = gw.asks()[-1]
    assert ask["isReply"] is True, "the follow-up continued the upstream session"
    assert "list files" not in ask["questionText"] and "a.txt b.txt" in ask["questionText"]


def test_previous_response_id_continues_the_session(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    first = client.responses.create(model="auto", input="list files please", tools=[SHELL])
    call = next(i for i in first.output if i.type == "function_call")
    second = client.responses.create(
        model="auto",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a.txt b.txt"}],
        tools=[SHELL],
    )
    assert second.output_text == "There are two files."
    assert gw.asks()[-1]["isReply"] is True
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="auto", previous_response_id="resp_nope", input="x")
    assert info.value.code == "previous_response_not_found"


def test_claude_code_style_history_reuses_the_session(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    tools: list[Any] = [{"name": "Bash", "description": "Run a command.",
                         "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]  # fmt: skip
    messages: list[Any] = [{"role": "user", "content": "hello there"}]
    first = client.messages.create(
        model="claude-from-a-client", max_tokens=100, system="Be brief.", messages=messages, tools=tools
    )
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "text", "text": "and again", "cache_control": {"type": "ephemeral"}}]},
    ]
    second = client.messages.create(
        model="claude-from-a-client", max_tokens=100, system="Be brief.", messages=messages, tools=tools
    )
    text = second.content[0].text  # type: ignore[union-attr]
    assert text.startswith("sim: turn 2 of session"), text
    assert gw.asks()[-1]["questionText"] == "and again"
    stats = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'lingma_gateway_session_cache_total{kind="hits"} 1.0' in stats
