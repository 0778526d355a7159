"""``to_conversation`` on every Claude Code and anthropic-python capture and each block shape of docs/dialects.md §4.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from common.conversation import Conversation, ImagePart, TextPart, ToolChoice
from common.errors import BadRequestError
from handlers.anthropic_messages.schema import CountTokensRequest, MessagesRequest
from handlers.anthropic_messages.translate import to_conversation
from tests.conftest import captures_dir

CAPTURES = captures_dir()
MESSAGE_CAPTURES = sorted(
    p
    for p in [*CAPTURES.glob("claude_code_*.json"), *CAPTURES.glob("anthropic_python_*.json")]
    if isinstance(json.loads(p.read_text())["body"], dict)
)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def decode(body: dict[str, Any], kind: type[CountTokensRequest] = MessagesRequest) -> CountTokensRequest:
    return msgspec.json.decode(json.dumps(body).encode(), type=kind)


def convert(body: dict[str, Any], **options: Any) -> Conversation:
    kwargs: dict[str, Any] = {"key_fingerprint": "fp", "affinity": None}
    kwargs.update(options)
    return to_conversation(decode(body, CountTokensRequest if "max_tokens" not in body else MessagesRequest), **kwargs)


def base(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_there_are_captures_to_read() -> None:
    names = {p.name for p in MESSAGE_CAPTURES}
    assert "claude_code_p_tool_result.json" in names and "anthropic_python_count_tokens.json" in names


@pytest.mark.parametrize("path", MESSAGE_CAPTURES, ids=lambda p: p.stem)
def test_every_capture_body_becomes_a_conversation(path: Path) -> None:
    capture = load(path)
    body = capture["body"]
    kind = CountTokensRequest if "count_tokens" in capture["path"] else MessagesRequest
    session = {k.lower(): v for k, v in capture["headers"].items()}.get("x-claude-code-session-id")
    conv = to_conversation(decode(body, kind), key_fingerprint="", affinity=session)

    assert conv.model == body["model"]
    roles = [m.role for m in conv.messages]
    assert "system" not in roles[1:], "inline system entries fold into the one leading instruction"
    assert roles[-1] in ("user", "tool")
    system_text = conv.messages[0].text() if roles[0] == "system" else ""
    assert "x-anthropic-billing-header" not in system_text
    inline = [m for m in body["messages"] if m["role"] == "system"]
    for entry in inline:
        content = entry["content"]
        first = content if isinstance(content, str) else content[0]["text"]
        assert first.strip()[:200] in system_text
    assert [t.name for t in conv.tools] == body.get("_tool_names", [])
    for spec in conv.tools:
        assert isinstance(json.loads(spec.parameters), dict)
    assert conv.max_tokens == body.get("max_tokens")
    thinking = body.get("thinking") or {}
    assert conv.want_reasoning is (thinking.get("type") in ("enabled", "adaptive"))
    if session:
        assert conv.affinity == session
    elif "metadata" in body:
        assert conv.affinity == body["metadata"]["user_id"]


def test_the_tool_round_trip_capture_keeps_the_call_and_its_result() -> None:
    body = load(CAPTURES / "claude_code_p_tool_result.json")["body"]
    conv = convert(body)
    assistant, result = conv.messages[-2], conv.messages[-1]
    assert assistant.role == "assistant" and assistant.content == []
    (call,) = assistant.tool_calls
    assert call.id == "01" and call.name == "Bash"
    assert call.arguments == '{"command":"echo hi-from-tool","description":"Print greeting"}'
    assert result.role == "tool" and result.tool_call_id == "01" and result.name == "Bash"
    assert result.text() == "hi-from-tool" and result.is_error is False


def test_system_string_blocks_and_inline_entries_make_one_leading_instruction() -> None:
    body = base(
        user("hi"),
        {
            "role": "system",
            "content": [{"type": "text", "text": "inline rule", "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "later rule"},
        user("again"),
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cc_entrypoint=cli;"},
            {"type": "text", "text": "top rule", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
    )
    conv = convert(body)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "user"]
    assert conv.messages[0].content == [TextPart("top rule\n\ninline rule\n\nlater rule")]
    assert convert(base(user("hi"), system="plain")).messages[0].content == [TextPart("plain")]


def test_moving_the_inline_system_entry_does_not_change_the_conversation() -> None:
    rule = {"role": "system", "content": "rule"}
    first = convert(base(user("hi"), rule))
    second = convert(base(rule, user("hi")))
    assert first == second


def test_images_documents_and_unknown_blocks_never_reject_and_never_carry_payloads() -> None:
    payload = "QUJD" * 1000
    conv = convert(
        base(
            user(
                [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": payload}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": payload},
                    },
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}},
                    {"type": "search_result", "source": "x", "title": "t", "content": []},
                    {"type": "container_upload", "file_id": "f"},
                    {"type": "text", "text": "look", "citations": None, "cache_control": {"type": "ephemeral"}},
                ]
            )
        )
    )
    (msg,) = conv.messages
    assert msg.content == [
        ImagePart("data:image/png"),
        ImagePart("https://example.com/a.png"),
        TextPart("[document not shown: application/pdf]"),
        TextPart("doc text"),
        TextPart("look"),
    ]
    assert payload not in msgspec.json.encode(conv).decode()


def test_thinking_redacted_thinking_and_server_tool_blocks_are_dropped_from_assistant_turns() -> None:
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": {"type": "error"}},
            {"type": "text", "text": "answer"},
            {"type": "tool_use", "id": "toolu_abc", "name": "Read", "input": {"file_path": "/x", "limit": 2}},
        ],
    }
    only_thinking = {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]}
    conv = convert(base(user("q"), assistant, user([{"type": "tool_result", "tool_use_id": "toolu_abc"}])))
    msg = conv.messages[1]
    assert msg.content == [TextPart("answer")]
    assert [(c.id, c.name, c.arguments) for c in msg.tool_calls] == [("abc", "Read", '{"file_path":"/x","limit":2}')]
    assert [m.role for m in convert(base(user("q"), only_thinking, user("next"))).messages] == ["user", "user"]


def test_tool_results_take_string_or_block_content_and_is_error() -> None:
    calls = {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {}},
        ],
    }
    results = user(
        [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "out", "is_error": False},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "is_error": True,
                "cache_control": {"type": "ephemeral"},
                "content": [
                    {"type": "text", "text": "no such file"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
                    {"type": "tool_reference", "tool_name": "X"},
                ],
            },
            {"type": "text", "text": "and now?"},
        ]
    )
    conv = convert(base(user("go"), calls, results))
    first, second, tail = conv.messages[2:]
    assert (first.role, first.tool_call_id, first.name, first.text(), first.is_error) == (
        "tool",
        "1",
        "Bash",
        "out",
        False,
    )
    assert (second.tool_call_id, second.name, second.is_error) == ("2", "Read", True)
    assert second.content == [TextPart("no such file"), ImagePart("data:image/jpeg")]
    assert (tail.role, tail.text()) == ("user", "and now?")


def test_tools_and_tool_choice() -> None:
    tools = [
        {"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"command": {}}}},
        {"name": "Read", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}, "type": "custom"},
        {"name": "Later", "input_schema": {"type": "object"}, "defer_loading": True, "strict": True},
    ]
    conv = convert(base(user("x"), tools=tools))
    assert [t.name for t in conv.tools] == ["Bash", "Read", "Later"]
    assert conv.tools[0].parameters == '{"type":"object","properties":{"command":{}}}'
    assert conv.tool_choice == ToolChoice()
    cases = {"auto": ToolChoice(), "any": ToolChoice(mode="required"), "none": ToolChoice(mode="none")}
    for kind, expected in cases.items():
        assert convert(base(user("x"), tools=tools, tool_choice={"type": kind})).tool_choice == expected
    named = convert(base(user("x"), tools=tools, tool_choice={"type": "tool", "name": "Read"}))
    assert named.tool_choice == ToolChoice(mode="named", name="Read")
    with pytest.raises(BadRequestError, match="not among the tools"):
        convert(base(user("x"), tools=tools, tool_choice={"type": "tool", "name": "Write"}))
    with pytest.raises(BadRequestError, match="tool_choice"):
        convert(base(user("x"), tools=tools, tool_choice={"type": "sometimes"}))


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
        {"type": "code_execution_20250825", "name": "code_execution"},
    ],
)
def test_server_tools_are_a_clear_400_naming_the_tool(tool: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError, match=f"server tools are not supported by this gateway: '{tool['name']}'"):
        convert(base(user("x"), tools=[{"name": "Bash", "input_schema": {}}, tool]))


def test_thinking_affinity_and_limits() -> None:
    assert convert(base(user("x"), thinking={"type": "enabled", "budget_tokens": 1024})).want_reasoning
    assert convert(base(user("x"), thinking={"type": "adaptive", "display": "omitted"})).want_reasoning
    assert not convert(base(user("x"), thinking={"type": "disabled"})).want_reasoning
    assert not convert(base(user("x"))).want_reasoning
    meta = base(user("x"), metadata={"user_id": '{"session_id":"s1"}'})
    assert convert(meta).affinity == '{"session_id":"s1"}'
    assert convert(meta, affinity="header-wins").affinity == "header-wins"
    conv = convert(base(user("x"), stop_sequences=["END"], temperature=0.2, top_k=3, service_tier="auto"))
    assert conv.max_tokens == 100 and conv.api_key_fingerprint == "fp"


def test_required_fields_and_bad_shapes() -> None:
    with pytest.raises(msgspec.ValidationError, match="max_tokens"):
        decode({"model": "m", "messages": [user("x")]})
    with pytest.raises(msgspec.ValidationError, match="model"):
        decode({"max_tokens": 5, "messages": [user("x")]}, CountTokensRequest)
    assert decode({"model": "m", "messages": [user("x")]}, CountTokensRequest).model == "m"
    with pytest.raises(BadRequestError, match="model"):
        convert(base(user("x"), model=""))
    with pytest.raises(BadRequestError, match="at least one"):
        convert(base({"role": "system", "content": "only"}))
    with pytest.raises(BadRequestError, match="role"):
        convert(base({"role": "tool", "content": "x"}))
    with pytest.raises(BadRequestError, match="content block"):
        convert(base(user([{"type": "tool_use", "name": "no id"}])))
