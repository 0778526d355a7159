"""One input policy for every dialect (docs/input-policy.md), table-driven over the three dialects.

Everything here is decided at the HTTP edge, so a handler without a sidecar is enough: a request that passes
the policy gets the dialect's "sidecar unavailable" answer (503, or 529 for Anthropic), one that breaks it a
4xx in the dialect's envelope. Deeply nested JSON is part of the policy: a 400, never a 500 or a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.client import SidecarClient
from common.conversation import Conversation, Message, TextPart, ToolCallRecord, ToolSpec
from common.errors import BadRequestError
from common.protocol import Complete
from tests.support.edge_gateway import API_KEY, EdgeGateway

Body = dict[str, Any]


class Dialect:
    def __init__(self, name: str, path: str, base: Body, headers: dict[str, str], passed: int) -> None:
        self.name, self.path, self.base, self.headers, self.passed = name, path, base, headers, passed

    def body(self) -> Body:
        return json.loads(json.dumps(self.base))


CHAT = Dialect(
    "chat",
    "/v1/chat/completions",
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"authorization": f"Bearer {API_KEY}"},
    503,
)
RESPONSES = Dialect(
    "responses",
    "/v1/responses",
    {"model": "m", "input": [{"role": "user", "content": "hi"}]},
    {"authorization": f"Bearer {API_KEY}"},
    503,
)
ANTHROPIC = Dialect(
    "anthropic",
    "/v1/messages",
    {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
    529,
)
COUNT_TOKENS = Dialect("count_tokens", "/v1/messages/count_tokens", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, ANTHROPIC.headers, 529)  # fmt: skip
DIALECTS = {d.name: d for d in (CHAT, RESPONSES, ANTHROPIC)}


def _tool(dialect: str, name: str, schema: Any = None) -> Body:
    schema = schema if schema is not None else {"type": "object"}
    if dialect == "chat":
        return {"type": "function", "function": {"name": name, "parameters": schema}}
    if dialect == "responses":
        return {"type": "function", "name": name, "parameters": schema}
    return {"name": name, "input_schema": schema}


def _named_choice(dialect: str, name: str) -> Any:
    if dialect == "chat":
        return {"type": "function", "function": {"name": name}}
    if dialect == "responses":
        return {"type": "function", "name": name}
    return {"type": "tool", "name": name}


def _forced_choice(dialect: str) -> Any:
    return {"type": "any"} if dialect == "anthropic" else "required"


def _only_unknown_content(dialect: str) -> Body:
    if dialect == "chat":
        return {"messages": [{"role": "user", "content": [{"type": "hologram", "hologram": {}}]}]}
    if dialect == "responses":
        return {"input": [{"type": "hologram", "id": "h1"}]}
    return {"messages": [{"role": "user", "content": [{"type": "hologram", "data": "x"}]}]}


def _unknown_beside_text(dialect: str) -> Body:
    if dialect == "chat":
        return {"messages": [{"role": "user", "content": [{"type": "hologram"}, {"type": "text", "text": "hi"}]}]}
    if dialect == "responses":
        return {"input": [{"type": "hologram"}, {"role": "user", "content": "hi"}]}
    return {"messages": [{"role": "user", "content": [{"type": "hologram"}, {"type": "text", "text": "hi"}]}]}


# case name -> (change to the dialect's base body, expected status or None for "passes", expected param or None)
Change = Callable[[str], Body]
CASES: dict[str, tuple[Change, dict[str, int | None], str | None]] = {
    "temperature_1e308": (lambda d: {"temperature": 1e308}, {}, "temperature"),
    "temperature_in_openai_range_only": (
        lambda d: {"temperature": 1.5},
        {"chat": None, "responses": None},
        "temperature",
    ),
    "temperature_negative": (lambda d: {"temperature": -0.1}, {}, "temperature"),
    "top_p_above_one": (lambda d: {"top_p": 1.5}, {}, "top_p"),
    "empty_tool_name": (lambda d: {"tools": [_tool(d, "")]}, {}, "tools"),
    "blank_tool_name": (lambda d: {"tools": [_tool(d, "  ")]}, {}, "tools"),
    "named_tool_choice_without_tools": (lambda d: {"tool_choice": _named_choice(d, "get_weather")}, {}, "tool_choice"),
    "forced_tool_choice_without_tools": (lambda d: {"tool_choice": _forced_choice(d)}, {}, "tool_choice"),
    "named_tool_choice_not_offered": (
        lambda d: {"tools": [_tool(d, "a")], "tool_choice": _named_choice(d, "b")},
        {},
        "tool_choice",
    ),
    "n_above_one": (lambda d: {"n": 2}, {"responses": None, "anthropic": None}, "n"),
    "n_of_one": (lambda d: {"n": 1}, {"chat": None, "responses": None, "anthropic": None}, None),
    "only_unknown_content": (_only_unknown_content, {}, "messages"),
    "unknown_content_beside_text": (_unknown_beside_text, {"chat": None, "responses": None, "anthropic": None}, None),
    "deep_tool_schema_1000": (lambda d: {"tools": [_tool(d, "t", _deep_object(1000))]}, {}, None),
    "deep_tool_schema_100": (lambda d: {"tools": [_tool(d, "t", _deep_object(100))]}, {}, "tools"),
    "shallow_tool_schema": (
        lambda d: {"tools": [_tool(d, "t", _deep_object(20))]},
        {"chat": None, "responses": None, "anthropic": None},
        None,
    ),
}


DEEP = "__deep_schema__"


def _deep_object(levels: int) -> str:
    """A placeholder for a schema nested ``levels`` deep, spliced in as text (``json`` itself would recurse)."""
    return f"{DEEP}{levels}"


def _encode(body: Body) -> bytes:
    text = json.dumps(body)
    for levels in (20, 100, 1000):
        schema = '{"type": "object", "properties": {"x": ' * levels + '{"type": "string"}' + "}}" * levels
        text = text.replace(f'"{DEEP}{levels}"', schema)
    return text.encode()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeGateway]:
    gw = EdgeGateway(Path(tmp_path_factory.mktemp("policy"))).start()
    yield gw
    gw.stop()


def _post(gw: EdgeGateway, dialect: Dialect, content: bytes, content_type: str = "application/json") -> httpx.Response:
    headers = {**dialect.headers, "content-type": content_type}
    return httpx.post(gw.url + dialect.path, content=content, headers=headers, timeout=30)


def _assert_envelope(dialect: Dialect, r: httpx.Response, status: int, param: str | None = None) -> str:
    assert r.status_code == status, (dialect.name, r.status_code, r.text)
    body = r.json()
    if dialect.name in ("anthropic", "count_tokens"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        return str(body["error"]["message"])
    assert body["error"]["type"] == "invalid_request_error", body
    if param is not None:
        assert body["error"]["param"] == param, body
    return str(body["error"]["message"])


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("case", list(CASES))
def test_one_policy_for_every_dialect(edge: EdgeGateway, case: str, dialect: str) -> None:
    change, exceptions, param = CASES[case]
    d = DIALECTS[dialect]
    body = {**d.body(), **change(dialect)}
    r = _post(edge, d, _encode(body))
    expected = exceptions.get(dialect, 400)
    if expected is None:
        assert r.status_code == d.passed, (case, dialect, r.status_code, r.text)
        return
    message = _assert_envelope(d, r, expected, param)
    if case == "only_unknown_content":
        assert "'hologram'" in message and "at least one" not in message


@pytest.mark.parametrize("dialect", [*DIALECTS.values(), COUNT_TOKENS], ids=lambda d: d.name)
def test_a_body_that_is_not_json_is_415(edge: EdgeGateway, dialect: Dialect) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        r = _post(edge, dialect, json.dumps(dialect.body()).encode(), content_type)
        _assert_envelope(dialect, r, 415)
    assert _post(edge, dialect, json.dumps(dialect.body()).encode(), "application/json; charset=utf-8").status_code == dialect.passed  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=lambda d: d.name)
def test_an_infinite_temperature_is_400(edge: EdgeGateway, dialect: Dialect) -> None:
    raw = json.dumps({**dialect.body(), "temperature": 0.5}).encode().replace(b"0.5", b"1e999")
    _assert_envelope(dialect, _post(edge, dialect, raw), 400)


@pytest.mark.parametrize("dialect", [*DIALECTS.values(), COUNT_TOKENS], ids=lambda d: d.name)
def test_deeply_nested_json_anywhere_is_400_without_a_traceback(edge: EdgeGateway, dialect: Dialect) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    base = json.dumps(dialect.body()).encode()
    unknown_field = base[:-1] + b', "extra": ' + nested + b"}"
    known_field = base.replace(b'"hi"', nested)
    for raw in (unknown_field, known_field):
        _assert_envelope(dialect, _post(edge, dialect, raw), 400)
    logs = edge.logs()
    assert "Traceback" not in logs and "RecursionError" not in logs


def test_deep_tool_call_arguments_are_400(edge: EdgeGateway) -> None:
    args = "[" * 5000 + "]" * 5000
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "t", "arguments": args}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        "tools": [_tool("chat", "t")],
    }
    _assert_envelope(CHAT, _post(edge, CHAT, json.dumps(body).encode()), 400, "messages")


def test_the_count_tokens_route_follows_the_policy(edge: EdgeGateway) -> None:
    body = {**COUNT_TOKENS.body(), "tool_choice": {"type": "tool", "name": "x"}}
    _assert_envelope(COUNT_TOKENS, _post(edge, COUNT_TOKENS, json.dumps(body).encode()), 400)
    body = {**COUNT_TOKENS.body(), "tools": [_tool("anthropic", "t", _deep_object(1000))]}
    _assert_envelope(COUNT_TOKENS, _post(edge, COUNT_TOKENS, _encode(body)), 400)


async def test_the_sidecar_refuses_a_deep_conversation_as_bad_request(sidecar_factory: Any) -> None:
    """A handler that skipped the checks (another version, a bug) still gets a 400-class answer, not a crash."""
    sidecar = sidecar_factory(["--simulator"])
    client = SidecarClient(sidecar.socket)
    deep = "[" * 50_000 + "]" * 50_000
    conv = Conversation(
        model="m",
        messages=[
            Message(role="user", content=[TextPart("hi")]),
            Message(role="assistant", tool_calls=[ToolCallRecord(id="c1", name="t", arguments=deep)]),
            Message(role="tool", content=[TextPart("ok")], tool_call_id="c1", name="t"),
            Message(role="user", content=[TextPart("and now?")]),
        ],
        tools=[ToolSpec(name="t")],
    )
    try:
        with pytest.raises(BadRequestError, match="nests too deeply"):
            async with client.stream(Complete(conversation=conv, request_id="req_deep")) as events:
                [event async for event in events]
        assert (await client.ping()).instances_ready >= 0  # the sidecar still answers
    finally:
        await client.aclose()
    log = sidecar.log.read_text()
    assert "Traceback" not in log
