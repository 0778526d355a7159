"""Request translation: every captured Codex and SDK body, and each item and tool shape of docs/dialects.md §3.1.

References: docs/dialects.md §3.1 (the request).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from common.conversation import Conversation, ImagePart, TextPart, ToolCallRecord, ToolChoice
from common.errors import BadRequestError
from handlers.openai_responses.schema import ResponsesRequest
from handlers.openai_responses.translate import to_conversation, unserved_tool_types
from tests.support.responses_sse import CAPTURES

CODEX_CAPTURES = sorted(CAPTURES.glob("codex_*.json"))


def decode(body: dict[str, Any]) -> ResponsesRequest:
    return msgspec.json.decode(json.dumps(body), type=ResponsesRequest)


def convert(
    body: dict[str, Any],
    *,
    affinity: str | None = None,
) -> Conversation:
    return to_conversation(
        decode(body),
        key_fingerprint="fp",
        affinity=affinity,
        response_id="resp_new",
    )


def capture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((CAPTURES / name).read_text())["body"]
    return body


def test_the_captures_are_there() -> None:
    assert len(CODEX_CAPTURES) >= 4, f"Codex captures missing under {CAPTURES}"


@pytest.mark.parametrize("path", CODEX_CAPTURES, ids=[p.stem for p in CODEX_CAPTURES])
def test_every_codex_capture_translates(path: Path) -> None:
    body = json.loads(path.read_text())["body"]
    conv = convert(body)
    assert conv.model == body["model"]
    assert [m.role for m in conv.messages[:4]] == ["developer", "developer", "user", "user"]
    assert conv.messages[0].text().startswith("You are")
    assert conv.want_reasoning  # Codex always sends reasoning
    assert conv.affinity == body["prompt_cache_key"]
    assert conv.response_id == "resp_new" and conv.previous_response_id is None
    names = [t.name for t in conv.tools]
    assert "exec_command" in names
    assert not {"web_search", "tool_search", "multi_agent_v1"} & set(names)
    assert conv.tool_choice == ToolChoice(mode="auto")
    exec_spec = next(t for t in conv.tools if t.name == "exec_command")
    assert json.loads(exec_spec.parameters)["required"] == ["cmd"]


def test_codex_first_turn_is_the_user_prompt() -> None:
    conv = convert(capture("codex_exec_turn1_fake_model.json"))
    assert len(conv.messages) == 4
    assert conv.messages[-1].text() == "Run echo"


def test_codex_tool_round_trip_becomes_a_call_and_its_result() -> None:
    conv = convert(capture("codex_exec_turn2_function_call_output.json"))
    assert [m.role for m in conv.messages[-3:]] == ["user", "assistant", "tool"]
    assistant, result = conv.messages[-2:]
    assert assistant.content == []
    assert assistant.tool_calls == [
        ToolCallRecord(id="70498ffe", name="exec_command", arguments='{"cmd": "echo hi-from-tool"}')
    ]
    assert result.tool_call_id == "70498ffe" and result.name == "exec_command"
    assert "hi-from-tool" in result.text()


def test_codex_reasoning_echo_is_accepted_and_dropped() -> None:
    body = capture("codex_exec_turn2_reasoning_echo.json")
    assert any(item.get("type") == "reasoning" and item["content"] is None for item in body["input"])
    conv = convert(body)
    assert [m.role for m in conv.messages[-3:]] == ["user", "assistant", "tool"]
    assert all("Thinking about" not in m.text() for m in conv.messages)


def test_codex_gpt55_custom_tool_is_a_custom_spec_with_its_grammar() -> None:
    body = capture("codex_exec_gpt55.json")
    conv = convert(body)
    patch = next(t for t in conv.tools if t.name == "apply_patch")
    assert patch.kind == "custom"
    assert "FREEFORM" in patch.description and "begin_patch" in patch.description and "lark" in patch.description
    assert sorted(unserved_tool_types(decode(body))) == ["tool_search", "web_search"]


def test_codex_unserved_types_include_namespace() -> None:
    assert sorted(unserved_tool_types(decode(capture("codex_exec_turn1_fake_model.json")))) == [
        "namespace",
        "web_search",
    ]


def test_openai_python_plain_string_input() -> None:
    body = capture("openai_python_responses_stream.json")
    conv = convert(body)
    assert [(m.role, m.text()) for m in conv.messages] == [("user", "hi")]
    assert conv.tools == [] and conv.tool_choice == ToolChoice(mode="none")
    assert not conv.want_reasoning


def test_instructions_become_a_leading_system_message() -> None:
    conv = convert({"model": "m", "instructions": "Be terse.", "input": [{"role": "user", "content": "hi"}]})
    assert [(m.role, m.text()) for m in conv.messages] == [("system", "Be terse."), ("user", "hi")]


def test_easy_messages_parts_and_roles() -> None:
    conv = convert(
        {
            "model": "m",
            "input": [
                {"role": "system", "content": "sys"},
                {"role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look: "},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                        {"type": "input_file", "file_id": "file_1"},
                    ],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "seen", "annotations": []}]},
            ],
        }
    )
    assert [m.role for m in conv.messages] == ["system", "developer", "user", "assistant"]
    assert conv.messages[2].content == [TextPart("look: "), ImagePart("data:image/png;base64")]
    assert conv.messages[3].text() == "seen"


def test_calls_join_the_assistant_message_and_outputs_take_text_and_image_placeholders() -> None:
    conv = convert(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Running."}]},
                {"type": "function_call", "call_id": "call_a", "name": "exec_command", "arguments": '{"cmd":"ls"}'},
                {"type": "function_call", "id": "fc_b", "call_id": "call_b", "name": "view_image", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
                {
                    "type": "function_call_output",
                    "call_id": "call_b",
                    "output": [
                        {"type": "input_text", "text": "the image:"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    ],
                },
            ],
        }
    )
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "tool"]
    assistant = conv.messages[1]
    assert assistant.text() == "Running."
    assert [(c.id, c.name, c.arguments) for c in assistant.tool_calls] == [
        ("a", "exec_command", '{"cmd":"ls"}'),
        ("b", "view_image", "{}"),
    ]
    image_result = conv.messages[3]
    assert image_result.tool_call_id == "b" and image_result.name == "view_image"
    assert image_result.text().startswith("the image:[image omitted")
    assert all(isinstance(p, TextPart) for p in image_result.content)


def test_custom_tool_call_and_output() -> None:
    conv = convert(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "patch it"},
                {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."},
            ],
        }
    )
    call = conv.messages[1].tool_calls[0]
    assert (call.id, call.kind, call.arguments) == ("p", "custom", "*** Begin Patch")
    assert conv.messages[2].tool_call_id == "p" and conv.messages[2].text() == "Success."


def test_unknown_item_types_are_skipped_not_rejected() -> None:
    conv = convert(
        {
            "model": "m",
            "input": [
                {"type": "item_reference", "id": "msg_x"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                {"type": "local_shell_call", "call_id": "c", "action": {}},
                {"type": "compaction", "encrypted_content": "..."},
                {"type": "reasoning", "summary": [], "encrypted_content": "blob"},
                {"type": "something_from_the_future", "x": 1},
                {"role": "user", "content": "still here"},
            ],
        }
    )
    assert [(m.role, m.text()) for m in conv.messages] == [("user", "still here")]


def test_tools_flat_nested_custom_and_unserved() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [
            {"type": "function", "name": "flat", "description": "d", "parameters": {"type": "object"}, "strict": True},
            {"type": "function", "function": {"name": "nested", "parameters": {"type": "object", "properties": {}}}},
            {"type": "custom", "name": "freeform"},
            {"type": "local_shell"},
            {"type": "web_search", "external_web_access": True},
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "inner"}]},
            {"type": "image_generation"},
        ],
    }
    conv = convert(body)
    assert [(t.name, t.kind) for t in conv.tools] == [
        ("flat", "function"),
        ("nested", "function"),
        ("freeform", "custom"),
    ]
    assert json.loads(conv.tools[1].parameters) == {"type": "object", "properties": {}}
    assert "free-form" in conv.tools[2].description
    assert unserved_tool_types(decode(body)) == ["local_shell", "web_search", "namespace", "image_generation"]


def test_every_servable_tool_is_passed_on_for_the_sidecar_to_filter() -> None:
    body = {
        "model": "m",
        "input": "hi",
        "tools": [{"type": "function", "name": "a"}, {"type": "custom", "name": "b"}],
    }
    assert [(t.name, t.kind) for t in convert(body).tools] == [("a", "function"), ("b", "custom")]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, ToolChoice()),
        ("auto", ToolChoice()),
        ("none", ToolChoice(mode="none")),
        ("required", ToolChoice(mode="required")),
        ({"type": "function", "name": "a"}, ToolChoice(mode="named", name="a")),
        ({"type": "web_search"}, ToolChoice()),
    ],
)
def test_tool_choice(choice: object, expected: ToolChoice) -> None:
    body: dict[str, Any] = {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "a"}]}
    if choice is not None:
        body["tool_choice"] = choice
    assert convert(body).tool_choice == expected


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "a"}], "tool_choice": "sometimes"},
        {
            "model": "m",
            "input": "hi",
            "tools": [{"type": "function", "name": "a"}],
            "tool_choice": {"type": "function", "name": "b"},
        },
        {"model": "", "input": "hi"},
        {"model": "m", "input": []},
        {"model": "m", "input": [{"type": "reasoning", "summary": []}]},
        {"model": "m", "input": [{"type": "function_call", "name": "x"}]},
        {"model": "m", "input": "hi", "tools": [{"type": "function"}]},
    ],
)
def test_invalid_requests_are_bad_requests(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError):
        convert(body)


def test_affinity_header_then_prompt_cache_key_then_previous_response_then_user() -> None:
    body = {"model": "m", "input": "hi", "prompt_cache_key": "pck", "previous_response_id": "resp_p", "user": "u"}
    assert convert(body, affinity="sess").affinity == "sess"
    assert convert(body).affinity == "pck"
    assert convert({"model": "m", "input": "hi", "previous_response_id": "resp_p", "user": "u"}).affinity == "resp_p"
    assert convert({"model": "m", "input": "hi", "user": "u"}).affinity == "u"
    assert convert({"model": "m", "input": "hi"}).affinity is None


def test_previous_response_id_limits_and_reasoning_flag() -> None:
    conv = convert(
        {
            "model": "m",
            "input": [{"role": "user", "content": "and then?"}],
            "previous_response_id": "resp_old",
            "max_output_tokens": 256,
            "reasoning": {"effort": "low"},
            "store": False,
            "include": ["reasoning.encrypted_content"],
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": True}},
            "client_metadata": {"a": "b"},
            "service_tier": "auto",
        }
    )
    assert (conv.previous_response_id, conv.response_id) == ("resp_old", "resp_new")
    assert conv.max_tokens == 256 and conv.want_reasoning and conv.api_key_fingerprint == "fp"
    assert not convert({"model": "m", "input": "hi", "reasoning": None}).want_reasoning
