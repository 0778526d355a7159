"""The streaming filter: holdback, byte-exact release, whitespace between calls, counters and ``hold_all``."""

from __future__ import annotations

from sidecar.tools import CallOut, TextOut, ToolCallFilter

from .helpers import TOOLS, calls, run, texts

CONTRACT = '<tool_call>\n{"name": "Read", "arguments": {"path": "a"}}\n</tool_call>'


def test_plain_text_streams_at_once() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("Hello, ") == [TextOut("Hello,")]
    assert f.feed("world.\nMore") == [TextOut(" world.\nMore")]
    assert f.finish() == []


def test_trailing_whitespace_waits_for_the_next_character() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("Done.\n\n") == [TextOut("Done.")]
    assert f.finish() == [TextOut("\n\n")]


def test_a_partial_tag_is_held_until_known() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("a <tool") == [TextOut("a")]
    assert f.feed("box> b") == [TextOut(" <toolbox> b")]


def test_a_split_contract_block_becomes_one_call() -> None:
    f = ToolCallFilter(TOOLS)
    out = [*f.feed("Reading.\n<tool_"), *f.feed(CONTRACT[6:30]), *f.feed(CONTRACT[30:]), *f.finish()]
    assert out[0] == TextOut("Reading.")
    assert [type(o) for o in out] == [TextOut, CallOut]
    assert f.recognised == {"contract": 1, "tool_code": 0, "json": 0}


def test_held_fence_is_released_verbatim_when_not_a_call() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("```json\n") == []
    assert f.feed('{"name": "Nope"') == []
    assert f.feed(', "arguments": {}}\n```\n') == [TextOut('```json\n{"name": "Nope", "arguments": {}}\n```')]
    assert f.finish() == [TextOut("\n")]
    assert (f.leaked_as_text, f.parse_failures) == (1, 0)


def test_data_json_fence_streams_once_its_first_key_is_seen() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("```json\n") == []
    assert f.feed('{"users"') == [TextOut('```json\n{"users"')]
    assert f.feed(": [1]}\n") == [TextOut(": [1]}")]


def test_other_languages_stream_line_by_line() -> None:
    f = ToolCallFilter(TOOLS)
    assert f.feed("```python\nx = {\n") == [TextOut("```python\nx = {")]
    assert f.feed('    "name": "Bash"\n}\n``') == [TextOut('\n    "name": "Bash"\n}')]
    assert f.feed("`\ndone") == [TextOut("\n```\ndone")]


def test_whitespace_touching_calls_is_dropped() -> None:
    text = f"\n\n{CONTRACT}\n\n  \n{CONTRACT}\n\n"
    assert [type(o) for o in run([text])] == [CallOut, CallOut]


def test_text_around_calls_keeps_inner_whitespace_only() -> None:
    out = run([f"  Intro.\n\n{CONTRACT}\n\nDone.\n\nReally.\n\n"])
    assert out[0] == TextOut("  Intro.")
    assert texts(out[1:]) == "Done.\n\nReally.\n\n"


def test_hold_all_releases_everything_at_finish() -> None:
    f = ToolCallFilter(TOOLS, hold_all=True)
    assert f.feed("Some text ") == []
    assert f.feed(CONTRACT) == []
    out = f.finish()
    assert out[0] == TextOut("Some text")
    assert calls(out) == [("Read", '{"path":"a"}', "contract")]


def test_no_tools_means_no_calls() -> None:
    out = run([CONTRACT], {})
    assert out == [TextOut(CONTRACT)]


def test_counters_accumulate() -> None:
    f = ToolCallFilter(TOOLS)
    f.feed('<tool_call>{"name": "X"}</tool_call>\n{"name": "Read", "arguments": 3}\n```tool_code\nRead("a")\n```')
    f.finish()
    assert f.recognised == {"contract": 0, "tool_code": 1, "json": 0}
    assert (f.leaked_as_text, f.parse_failures) == (2, 1)


def test_calls_helper_sees_arguments() -> None:
    assert calls(run([CONTRACT])) == [("Read", '{"path":"a"}', "contract")]


def test_long_replies_read_the_same_in_one_piece_or_in_chunks() -> None:
    filler = "Some prose with <b>tags</b>, {braces} and `code`.\n" * 200
    text = filler + CONTRACT + "\n" + filler + '```json\n{"name": "Read", "arguments": {"path": "b"}}\n```\n' + filler
    whole = run([text])
    assert whole == run([text[i : i + 7] for i in range(0, len(text), 7)])
    assert [c[1] for c in calls(whole)] == ['{"path":"a"}', '{"path":"b"}']
    assert texts(whole) == filler.rstrip() + filler.rstrip() + filler


def test_an_indented_fence_in_a_list_item() -> None:
    text = '1. Read it:\n   ```json\n   {"name": "Read", "arguments": {"path": "a"}}\n   ```\n'
    assert calls(run([text])) == [("Read", '{"path":"a"}', "json")]
