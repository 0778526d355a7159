"""The tool contract, earlier calls and tool results as rendered into the prompt."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from common.conversation import ImagePart, Message, TextPart, ToolCallRecord, ToolChoice, ToolSpec
from sidecar.tools import offered_tools
from sidecar.tools.contract import (
    CALL_FORMAT_DOC,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    render_contract,
    render_tool_call,
    render_tool_calls,
    render_tool_result,
)

from .helpers import recognise

BASH_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "title": "BashInput",
        "properties": {
            "command": {"type": "string", "description": "The command"},
            "title": {"type": "string", "title": "Title"},
        },
        "required": ["command"],
        "additionalProperties": False,
    }
)
TOOLS = [
    ToolSpec(name="Bash", description="Run a shell command.", parameters=BASH_SCHEMA),
    ToolSpec(name="apply_patch", description="Apply a patch.", kind="custom"),
]


def tool_lines(contract: str) -> list[dict[str, object]]:
    inner = contract.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    return [json.loads(line) for line in inner.splitlines()]


def test_no_contract_without_tools_or_with_choice_none() -> None:
    assert render_contract([], ToolChoice()) == ""
    assert render_contract(TOOLS, ToolChoice(mode="none")) == ""


def test_auto_contract_lists_tools_and_the_one_format() -> None:
    contract = render_contract(TOOLS, ToolChoice())
    assert tool_lines(contract) == [
        {
            "name": "Bash",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command"},
                    "title": {"type": "string"},
                },
                "required": ["command"],
            },
        },
        {"name": "apply_patch", "description": "Apply a patch.", "input": "raw text"},
    ]
    assert '<tool_call>\n{"name": <tool-name>, "arguments": <args-json-object>}\n</tool_call>' in contract
    assert '<tool_call>\n{"name": <tool-name>, "input": <raw-text-as-json-string>}\n</tool_call>' in contract
    assert "several <tool_call> blocks" in contract
    assert "stop writing and wait" in contract
    assert "answer normally" in contract
    assert "MUST" not in contract


def test_custom_format_only_when_a_custom_tool_is_offered() -> None:
    contract = render_contract(TOOLS[:1], ToolChoice())
    assert '"arguments"' in contract
    assert '"input": <raw' not in contract


def test_required_choice_says_a_call_is_mandatory() -> None:
    contract = render_contract(TOOLS, ToolChoice(mode="required"))
    assert "You MUST call at least one tool" in contract
    assert "answer normally" not in contract


def test_named_choice_names_the_tool() -> None:
    contract = render_contract(TOOLS, ToolChoice(mode="named", name="Bash"))
    assert 'You MUST call the tool "Bash" now, and no other tool' in contract


def test_named_choice_of_a_tool_not_offered_reads_as_required() -> None:
    contract = render_contract(TOOLS, ToolChoice(mode="named", name="Missing"))
    assert "You MUST call at least one tool" in contract


def test_long_description_is_cut_at_a_sentence() -> None:
    description = "First sentence here. " * 100
    spec = ToolSpec(name="Long", description=description)
    [line] = tool_lines(render_contract([spec], ToolChoice(), description_limit=100))
    text = line["description"]
    assert isinstance(text, str)
    assert text.endswith("here. …")
    assert len(text) <= 102


def test_description_whitespace_is_tidied() -> None:
    spec = ToolSpec(name="T", description="  Line one.   \n\n\n\nLine two.  ")
    [line] = tool_lines(render_contract([spec], ToolChoice()))
    assert line["description"] == "Line one.\n\nLine two."


def test_unparsable_schema_is_passed_as_text() -> None:
    spec = ToolSpec(name="T", parameters="{not json")
    [line] = tool_lines(render_contract([spec], ToolChoice()))
    assert line["parameters"] == "{not json"


def test_contract_is_deterministic() -> None:
    assert render_contract(TOOLS, ToolChoice()) == render_contract(list(TOOLS), ToolChoice())


def test_tool_call_is_rendered_in_the_contract_format() -> None:
    call = ToolCallRecord(id="c1", name="Bash", arguments='{"command":"ls -la"}')
    assert render_tool_call(call) == '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls -la"}}\n</tool_call>'


def test_custom_tool_call_is_rendered_with_input() -> None:
    call = ToolCallRecord(id="c1", name="apply_patch", arguments="*** Begin Patch\n", kind="custom")
    assert render_tool_call(call) == (
        '<tool_call>\n{"name": "apply_patch", "input": "*** Begin Patch\\n"}\n</tool_call>'
    )


def test_tool_call_with_broken_arguments_keeps_them_as_a_string() -> None:
    call = ToolCallRecord(id="c1", name="Bash", arguments="{oops")
    assert render_tool_call(call) == '<tool_call>\n{"name": "Bash", "arguments": "{oops"}\n</tool_call>'


def test_several_tool_calls() -> None:
    calls = [ToolCallRecord(id="a", name="Bash"), ToolCallRecord(id="b", name="Bash")]
    assert render_tool_calls(calls) == render_tool_call(calls[0]) + "\n" + render_tool_call(calls[1])


def test_tool_result() -> None:
    msg = Message(role="tool", content=[TextPart("out")], tool_call_id="call_1", name="Bash")
    assert render_tool_result(msg) == '<tool_response name="Bash" id="call_1">\nout\n</tool_response>'


def test_tool_result_error_image_and_escaping() -> None:
    msg = Message(
        role="tool",
        content=[TextPart("failed: "), ImagePart("data:image/png")],
        tool_call_id='a"b',
        is_error=True,
    )
    assert render_tool_result(msg) == ('<tool_response id="a&quot;b" error="true">\nfailed: [image]\n</tool_response>')


def test_empty_tool_result() -> None:
    assert render_tool_result(Message(role="tool")) == "<tool_response>\n</tool_response>"


def test_format_doc_shows_the_tags() -> None:
    assert TOOL_CALL_OPEN in CALL_FORMAT_DOC
    assert TOOL_CALL_CLOSE in CALL_FORMAT_DOC


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None, max_examples=60)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4), st.text())
def test_rendered_history_is_recognised_as_the_same_call(arguments: dict[str, object], raw: str) -> None:
    tools = offered_tools(TOOLS)
    canonical = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    rendered = render_tool_call(ToolCallRecord(id="x", name="Bash", arguments=canonical))
    custom = render_tool_call(ToolCallRecord(id="y", name="apply_patch", arguments=raw, kind="custom"))
    found = recognise(rendered + "\n" + custom, tools)
    assert [(c.name, c.arguments) for c in found.calls] == [("Bash", canonical), ("apply_patch", raw)]
    assert found.text == ()
