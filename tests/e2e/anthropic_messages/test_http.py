"""End to end over real HTTP: a scripted sidecar, ``lingma-gateway handler``, the anthropic SDK and raw captures."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import captures_dir
from tests.e2e.anthropic_messages.conftest import API_KEY
from tests.support.anthropic_sse import check_stream, comparable
from tests.support.scripted import ScriptedGateway

CAPTURES = captures_dir()
MESSAGE_SHAPED = sorted(
    p
    for p in [*CAPTURES.glob("claude_code_*.json"), *CAPTURES.glob("anthropic_python_*.json")]
    if isinstance(json.loads(p.read_text())["body"], dict)
)
CLAUDE_CODE_TURNS = [p for p in MESSAGE_SHAPED if p.name.startswith("claude_code_") and "count_tokens" not in p.name]
DROPPED_HEADERS = {"host", "content-length", "authorization", "x-api-key"}
BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    "cache_control": {"type": "ephemeral"},
}
READ = {"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}


def sdk(gateway: ScriptedGateway, *, bearer: bool = False) -> anthropic.Anthropic:
    if bearer:
        return anthropic.Anthropic(base_url=gateway.base_url, auth_token=API_KEY, api_key=None, max_retries=0)
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=API_KEY, max_retries=0)


def request(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-gateway-test", "max_tokens": 256, "messages": [{"role": "user", "content": text}], **extra}


def post(
    gateway: ScriptedGateway, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    sent = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", **(headers or {})}
    return httpx.post(gateway.url(path), json=body, headers=sent, timeout=30)


CASES = {
    "text": request("TURN-TEXT please"),
    "tool": request("TURN-TOOL please", tools=[BASH]),
    "two-tools": request("TURN-TWO-TOOLS please", tools=[BASH, READ], tool_choice={"type": "any"}),
    "thinking": request("TURN-THINK please", thinking={"type": "enabled", "budget_tokens": 1024}),
    "thinking-off": request("TURN-THINK please"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stream_final_message_equals_create(gateway: ScriptedGateway, case: str) -> None:
    body = CASES[case]
    client = sdk(gateway, bearer=case == "tool")
    with client.messages.stream(**body) as stream:
        streamed = stream.get_final_message()
    created = client.messages.create(**body)
    assert comparable(streamed, drop_ids=True) == comparable(created, drop_ids=True)
    assert created.model == "claude-gateway-test" and created.id.startswith("msg_")
    assert created.stop_reason is not None
    kinds = [block.type for block in created.content]
    expected = {
        "text": ["text"],
        "tool": ["text", "tool_use"],
        "two-tools": ["tool_use", "tool_use"],
        "thinking": ["thinking", "text"],
        "thinking-off": ["text"],
    }[case]
    assert kinds == expected
    if case == "tool":
        block = created.content[1]
        assert block.type == "tool_use" and block.id == "toolu_t1"
        assert block.input == {"command": 'ls -la "my dir"\necho é'}
        assert created.stop_reason == "tool_use"
    if case == "text":
        assert created.usage.input_tokens == 20 and created.usage.cache_read_input_tokens == 10
        assert created.usage.output_tokens == 3


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("query", ["", "?beta=true"])
def test_raw_stream_bytes_meet_the_checklist(gateway: ScriptedGateway, case: str, query: str) -> None:
    beta = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"} if query else {}
    response = post(gateway, "/v1/messages" + query, {**CASES[case], "stream": True}, beta)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"].startswith("no-cache")
    assert response.headers["request-id"] and response.headers["x-request-id"]
    summary = check_stream(response.content, model="claude-gateway-test", schemas={"Bash": BASH["input_schema"]})
    assert summary.error is None


def test_mid_stream_failure_raises_from_the_sdk_stream(gateway: ScriptedGateway) -> None:
    client = sdk(gateway)
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIError, match="boom from upstream"),
        client.messages.stream(**request("TURN-EXPLODE now")) as stream,
    ):
        seen.extend(stream.text_stream)
    assert seen == ["partial answer"]
    raw = post(gateway, "/v1/messages", request("TURN-EXPLODE now", stream=True))
    summary = check_stream(raw.content)
    assert summary.error == {"type": "api_error", "message": "boom from upstream"}
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(**request("TURN-EXPLODE now"))


def test_failure_before_commit_is_an_http_status_in_the_anthropic_envelope(gateway: ScriptedGateway) -> None:
    response = post(gateway, "/v1/messages", request("TURN-EARLY-FAIL", stream=True))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"] == "error"
    assert response.json()["error"] == {"type": "rate_limit_error", "message": "slow down"}
    with pytest.raises(anthropic.RateLimitError):
        sdk(gateway).messages.create(**request("TURN-EARLY-FAIL"))


def test_pings_keep_a_slow_stream_alive(gateway: ScriptedGateway) -> None:
    response = post(gateway, "/v1/messages", request("TURN-SLOW", stream=True))
    summary = check_stream(response.content)
    assert summary.pings >= 1 and summary.blocks == [{"type": "text", "text": "late"}]
    assert response.text.index("event: ping") < response.text.index("content_block_start")
    with sdk(gateway).messages.stream(**request("TURN-SLOW")) as stream:
        assert stream.get_final_text() == "late"


def test_count_tokens_equals_the_turns_input_usage(gateway: ScriptedGateway) -> None:
    body = request("please TURN-COUNT now ok", system="be brief")
    client = sdk(gateway)
    counted = client.messages.count_tokens(model=body["model"], messages=body["messages"], system=body["system"])
    assert counted.input_tokens == 6  # the scripted sidecar counts words: "be brief" + "please TURN-COUNT now ok"
    created = client.messages.create(**body)
    assert created.usage.input_tokens + (created.usage.cache_read_input_tokens or 0) == counted.input_tokens
    assert created.usage.cache_read_input_tokens == 2
    with client.messages.stream(**body) as stream:
        usage = stream.get_final_message().usage
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) == counted.input_tokens


@pytest.mark.parametrize("path", MESSAGE_SHAPED, ids=lambda p: p.stem)
def test_count_tokens_answers_every_messages_shaped_capture(gateway: ScriptedGateway, path: Path) -> None:
    capture = json.loads(path.read_text())
    headers = {k: v for k, v in capture["headers"].items() if k.lower() not in DROPPED_HEADERS}
    response = httpx.post(
        gateway.url("/v1/messages/count_tokens?beta=true"),
        content=json.dumps(capture["body"]).encode(),
        headers={**headers, "x-api-key": API_KEY},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["input_tokens"] and isinstance(body["input_tokens"], int)


def test_count_tokens_is_cheap_and_concurrent(gateway: ScriptedGateway) -> None:
    body = {"model": "claude-opus-5-5", "messages": [{"role": "user", "content": "foo bar"}], "tools": [BASH]}
    with ThreadPoolExecutor(25) as pool:
        results = list(pool.map(lambda _: post(gateway, "/v1/messages/count_tokens?beta=true", body), range(25)))
    assert [r.status_code for r in results] == [200] * 25
    assert {r.json()["input_tokens"] for r in results} == {2}


@pytest.mark.parametrize("path", CLAUDE_CODE_TURNS, ids=lambda p: p.stem)
def test_requests_shaped_exactly_like_claude_code_are_answered(gateway: ScriptedGateway, path: Path) -> None:
    capture = json.loads(path.read_text())
    sent = {k: v for k, v in capture["headers"].items() if k.lower() not in DROPPED_HEADERS}
    bearer = any(k.lower() == "authorization" for k in capture["headers"])
    sent.update({"Authorization": f"Bearer {API_KEY}"} if bearer else {"x-api-key": API_KEY})
    response = httpx.post(
        gateway.url(capture["path"]), content=json.dumps(capture["body"]).encode(), headers=sent, timeout=30
    )
    assert response.status_code == 200, response.text
    if capture["body"].get("stream"):
        summary = check_stream(response.content, model=capture["body"]["model"])
        assert summary.stop_reason == "end_turn" and summary.blocks[0]["text"].startswith("echo: ")
    else:
        message = response.json()
        assert message["type"] == "message" and message["stop_reason"] == "end_turn"
        assert message["content"][0]["text"].startswith("echo: ")


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens?beta=true"])
def test_bad_or_missing_keys_get_the_401_envelope(gateway: ScriptedGateway, path: str) -> None:
    for headers in ({"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}, {}):
        response = httpx.post(gateway.url(path), json=request("TURN-TEXT"), headers=headers, timeout=10)
        assert response.status_code == 401
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        assert body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.base_url, api_key="wrong", max_retries=0).messages.create(
            **request("TURN-TEXT")
        )


def test_bad_requests_are_400_in_the_anthropic_envelope(gateway: ScriptedGateway) -> None:
    no_limit = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    server_tool = request("x", tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}])
    cases = [(no_limit, "max_tokens"), (server_tool, "server tools are not supported by this gateway: 'web_search'")]
    for body, needle in cases:
        response = post(gateway, "/v1/messages?beta=true", body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and needle in error["message"]
    garbage = httpx.post(gateway.url("/v1/messages"), content=b"{not json", headers={"x-api-key": API_KEY}, timeout=10)
    assert garbage.status_code == 400 and garbage.json()["error"]["type"] == "invalid_request_error"


def test_models_list_reads_as_anthropic(gateway: ScriptedGateway) -> None:
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "User-Agent": "claude-code/2.1.332"}
    for query, count in (("?limit=1000", 1), ("?limit=1", 1), ("", 1)):
        response = httpx.get(gateway.url("/v1/models" + query), headers=headers, timeout=10)
        assert response.status_code == 200
        page = response.json()
        assert len(page["data"]) == count and page["has_more"] is False
        assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        entry = page["data"][0]
        assert entry["type"] == "model" and entry["display_name"] and entry["created_at"].endswith("Z")
    bad = httpx.get(gateway.url("/v1/models?limit=0"), headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    listed = sdk(gateway).models.list(limit=1)
    assert [m.id for m in listed.data] == [page["data"][0]["id"]]
