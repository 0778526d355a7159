"""Each recogniser on whole replies: what becomes a call, what stays text, and what is counted."""

from __future__ import annotations

import warnings

import pytest

from common.conversation import ToolSpec
from sidecar.tools import OfferedTool, offered_tools

from .helpers import TOOLS, recognise


def found(text: str) -> list[tuple[str, str, str]]:
    return [(c.name, c.arguments, c.recogniser) for c in recognise(text, TOOLS).calls]


def test_offered_tools_reads_properties_and_never_raises() -> None:
    tools = offered_tools(
        [
            ToolSpec(name="a", parameters='{"properties": {"x": {"type": "string"}, "y": {}}}'),
            ToolSpec(name="b", parameters="{broken"),
            ToolSpec(name="c", parameters='{"properties": [1, 2]}'),
            ToolSpec(name="d", parameters="[]"),
            ToolSpec(name="e", kind="custom"),
        ]
    )
    assert tools["a"] == OfferedTool("a", "function", ("x", "y"), frozenset({"x"}))
    assert tools["b"].properties == tools["c"].properties == tools["d"].properties == ()
    assert tools["e"].kind == "custom"


# the contract format


def test_contract_block() -> None:
    text = 'Let me look.\n<tool_call>\n{"name": "Bash", "arguments": {"command": "ls -la", "timeout": 5}}\n</tool_call>'
    r = recognise(text, TOOLS)
    assert found(text) == [("Bash", '{"command":"ls -la","timeout":5}', "contract")]
    assert r.text == ("Let me look.",)
    assert (r.parse_failures, r.leaked_as_text) == (0, 0)


def test_contract_block_without_closing_tag_at_the_end() -> None:
    assert found('<tool_call>\n  {"name": "Read", "arguments": {"path": "a.txt"}}  \n') == [
        ("Read", '{"path":"a.txt"}', "contract")
    ]


def test_contract_blocks_missing_the_closing_tag_between_them() -> None:
    text = '<tool_call>{"name": "Read", "arguments": {"path": "a"}}\n<tool_call>{"name": "Read", "arguments": {"path": "b"}}'
    assert [c[1] for c in found(text)] == ['{"path":"a"}', '{"path":"b"}']


def test_contract_custom_tool_takes_raw_input() -> None:
    text = '<tool_call>\n{"name": "apply_patch", "input": "*** Begin Patch\\n+x\\n"}\n</tool_call>'
    assert found(text) == [("apply_patch", "*** Begin Patch\n+x\n", "contract")]


def test_contract_tag_inside_a_json_string_does_not_end_the_block() -> None:
    text = '<tool_call>\n{"name": "apply_patch", "input": "write </tool_call> and <tool_call>"}\n</tool_call>'
    assert found(text) == [("apply_patch", "write </tool_call> and <tool_call>", "contract")]


def test_contract_qwen_xml_body() -> None:
    text = (
        "<tool_call>\n<function=Bash>\n<parameter=command>\necho 42\n</parameter>\n"
        "<parameter=timeout>\n42\n</parameter>\n</function>\n</tool_call>"
    )
    assert found(text) == [("Bash", '{"command":"echo 42","timeout":42}', "contract")]


def test_contract_body_in_a_fence() -> None:
    text = '<tool_call>\n```json\n{"name": "Read", "arguments": {"path": "x"}}\n```\n</tool_call>'
    assert found(text) == [("Read", '{"path":"x"}', "contract")]


def test_prose_naming_the_tag_is_text_and_not_counted() -> None:
    text = "Calls go in <tool_call> tags, closed by </tool_call>."
    r = recognise(text, TOOLS)
    assert r.calls == ()
    assert r.text == (text,)
    assert (r.parse_failures, r.leaked_as_text) == (0, 0)


# tool_code fences


def test_tool_code_keyword_arguments_with_json_literals() -> None:
    text = '```tool_code\nBash(command="ls", timeout=null, extra=[true, false, {"k": (1, 2)}])\n```'
    assert found(text) == [("Bash", '{"command":"ls","timeout":null,"extra":[true,false,{"k":[1,2]}]}', "tool_code")]


def test_tool_code_positional_argument_for_a_one_property_schema() -> None:
    assert found("```tool_code\nRead('notes.md')\n```") == [("Read", '{"path":"notes.md"}', "tool_code")]


def test_tool_code_positional_argument_needs_exactly_one_property() -> None:
    r = recognise("```tool_code\nBash('ls')\n```", TOOLS)
    assert r.calls == ()
    assert (r.parse_failures, r.leaked_as_text) == (1, 1)


def test_tool_code_several_calls_and_print_wrapping() -> None:
    text = "```tool_code\nprint(default_api.Read(path='a'))\nRead(path='b')\napply_patch('''*** x\n''')\n```"
    assert found(text) == [
        ("Read", '{"path":"a"}', "tool_code"),
        ("Read", '{"path":"b"}', "tool_code"),
        ("apply_patch", "*** x\n", "tool_code"),
    ]


def test_tool_code_never_evaluates_code() -> None:
    r = recognise("```tool_code\nBash(command=__import__('os').system('x'))\n```", TOOLS)
    assert r.calls == ()
    assert (r.parse_failures, r.leaked_as_text) == (1, 1)


def test_tool_code_with_an_unknown_name_leaks_without_a_failure() -> None:
    r = recognise("```tool_code\nsearch(q='x')\n```", TOOLS)
    assert r.calls == ()
    assert r.text == ("```tool_code\nsearch(q='x')\n```",)
    assert (r.parse_failures, r.leaked_as_text) == (0, 1)


def test_tool_code_syntax_error_is_a_failure() -> None:
    r = recognise("```tool_code\nBash(command='ls'\n```", TOOLS)
    assert r.calls == ()
    assert (r.parse_failures, r.leaked_as_text) == (1, 1)


# JSON objects


def test_bare_json_object() -> None:
    assert found('{"name": "Read", "arguments": {"path": "a"}}') == [("Read", '{"path":"a"}', "json")]


def test_bare_json_object_on_its_own_lines_after_prose() -> None:
    text = 'I will read it.\n{\n  "tool": "Read",\n  "parameters": {"path": "a"}\n}\n'
    r = recognise(text, TOOLS)
    assert found(text) == [("Read", '{"path":"a"}', "json")]
    assert r.text == ("I will read it.",)


def test_json_embedded_in_prose_is_not_a_call() -> None:
    text = 'Send {"name": "Read", "arguments": {"path": "a"}} to the API.\n{"name": "Read"} is an example.'
    r = recognise(text, TOOLS)
    assert r.calls == ()
    assert r.text == (text,)


def test_json_fenced() -> None:
    text = 'Here:\n```json\n{"name": "Bash", "input": {"command": "ls"}}\n```\n'
    assert found(text) == [("Bash", '{"command":"ls"}', "json")]


def test_json_in_a_plain_fence() -> None:
    assert found('```\n{"name": "Read", "arguments": {"path": "a"}}\n```') == [("Read", '{"path":"a"}', "json")]


def test_json_arguments_as_a_json_string() -> None:
    text = '{"name": "Bash", "arguments": "{\\"command\\": \\"ls\\"}"}'
    assert found(text) == [("Bash", '{"command":"ls"}', "json")]


def test_json_function_object() -> None:
    text = '```json\n{"type": "function", "function": {"name": "Read", "arguments": "{\\"path\\":\\"a\\"}"}}\n```'
    assert found(text) == [("Read", '{"path":"a"}', "json")]


def test_json_list_of_calls_in_a_fence() -> None:
    text = '```json\n[{"name": "Read", "arguments": {"path": "a"}}, {"name": "Read", "arguments": {"path": "b"}}]\n```'
    assert [c[1] for c in found(text)] == ['{"path":"a"}', '{"path":"b"}']


def test_json_custom_tool() -> None:
    assert found('{"name": "apply_patch", "input": "raw"}') == [("apply_patch", "raw", "json")]


def test_json_call_without_arguments() -> None:
    assert found('{"name": "Bash"}') == [("Bash", "{}", "json")]


def test_json_with_other_keys_is_data() -> None:
    text = '{"name": "Bash", "version": 3}'
    r = recognise(text, TOOLS)
    assert r.calls == ()
    assert (r.parse_failures, r.leaked_as_text) == (0, 0)


# what stays text


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "Write", "arguments": {"path": "a"}}\n</tool_call>',
        '{"name": "Write", "arguments": {"path": "a"}}',
        '```json\n{"name": "Write", "arguments": {}}\n```',
        "```tool_code\nWrite(path='a')\n```",
    ],
)
def test_unknown_names_stay_text(text: str) -> None:
    r = recognise(text, TOOLS)
    assert r.calls == ()
    assert r.text == (text,)
    assert (r.parse_failures, r.leaked_as_text) == (0, 1)


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "Bash", "arguments": {"command": }\n</tool_call>',
        '<tool_call>\n{"name": "Bash", "arguments": "not json"}\n</tool_call>',
        '{"name": "Bash", "arguments": [1, 2]}',
        '{"name": "Bash", "arguments": "{\\"command\\": NaN}"}',
        '```json\n{"name": "apply_patch", "input": 5}\n```',
        "```tool_code\nBash(command=x)\n```",
    ],
)
def test_broken_arguments_stay_text_and_count_a_failure(text: str) -> None:
    r = recognise(text, TOOLS)
    assert r.calls == ()
    assert r.text == (text,)
    assert (r.parse_failures, r.leaked_as_text) == (1, 1)


def test_one_bad_call_keeps_its_whole_span_as_text() -> None:
    text = "```tool_code\nRead(path='a')\nWrite(path='b')\n```"
    assert recognise(text, TOOLS).calls == ()


@pytest.mark.parametrize(
    "text",
    [
        '```python\ndef f():\n    return {"name": "Bash", "arguments": {}}\n```\n',
        '```json\n{"users": [{"name": "Bash"}]}\n```\nThat is the data.',
        '```json\n{"name": "Bash", "arguments": {}, "extra": 1}\n```',
        "```\nls -la\n```",
        '````markdown\n```json\n{"name": "Read", "arguments": {"path": "a"}}\n```\n````\n',
        '```python\n<tool_call>\n{"name": "Read", "arguments": {"path": "a"}}\n</tool_call>\n```',
        "Use `{x}` or ``` inline ``` code.\n{x} at a line start\n  {\n  }\n",
    ],
)
def test_code_and_data_come_out_byte_for_byte(text: str) -> None:
    r = recognise(text, TOOLS)
    assert r.calls == ()
    assert "".join(r.text) == text
    assert (r.parse_failures, r.leaked_as_text) == (0, 0)


def test_several_calls_in_one_reply_in_order() -> None:
    text = (
        "First a look.\n"
        '<tool_call>\n{"name": "Read", "arguments": {"path": "a"}}\n</tool_call>\n\n'
        '```tool_code\nBash(command="ls")\n```\n'
        '{"name": "apply_patch", "input": "p"}\n'
        'And then:\n```json\n{"name": "Read", "arguments": {"path": "b"}}\n```\n\n'
    )
    r = recognise(text, TOOLS)
    assert [(c.name, c.recogniser) for c in r.calls] == [
        ("Read", "contract"),
        ("Bash", "tool_code"),
        ("apply_patch", "json"),
        ("Read", "json"),
    ]
    assert r.text == ("First a look.", "And then:")
    assert [type(i).__name__ for i in r.items] == ["TextOut", "CallOut", "CallOut", "CallOut", "TextOut", "CallOut"]


def test_tool_code_ignores_python_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert found('```tool_code\nRead("\\d")\n```') == [("Read", '{"path":"\\\\d"}', "tool_code")]
