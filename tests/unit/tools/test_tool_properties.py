"""Properties: every format survives every chunking, and no input makes the filter raise or alter text."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.tools import CallOut, Out, ToolCallFilter

from .helpers import TOOLS, calls, merge_text, recognise, run, texts

Call = tuple[str, dict[str, object] | str]
"""A tool name with its arguments (a dict), or with its raw input for the custom tool."""


def _obj(call: Call, args_key: str = "arguments") -> dict[str, object]:
    name, args = call
    return {"name": name, ("input" if isinstance(args, str) else args_key): args}


def contract(call: Call) -> str:
    return f"<tool_call>\n{json.dumps(_obj(call), ensure_ascii=False)}\n</tool_call>"


def contract_xml(call: Call) -> str:
    name, args = call
    items = {"input": args} if isinstance(args, str) else args
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in items.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def _python_call(call: Call) -> str:
    name, args = call
    if isinstance(args, str):
        return f"{name}({args!r})"
    if name == "Read":
        return f"Read({args['path']!r})"
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def tool_code(call: Call) -> str:
    return f"```tool_code\n{_python_call(call)}\n```"


def json_bare(call: Call) -> str:
    return json.dumps(_obj(call, "parameters"), ensure_ascii=False)


def json_pretty(call: Call) -> str:
    return json.dumps(_obj(call, "input"), ensure_ascii=False, indent=2)


def json_fenced(call: Call) -> str:
    return f"```json\n{json.dumps(_obj(call), ensure_ascii=False)}\n```"


def json_plain_fence(call: Call) -> str:
    return f"```\n{json.dumps(_obj(call))}\n```"


def json_string_arguments(call: Call) -> str:
    name, args = call
    if isinstance(args, str):
        return json_bare(call)
    return json.dumps({"name": name, "arguments": json.dumps(args, ensure_ascii=False)})


def json_function(call: Call) -> str:
    return "```json\n" + json.dumps({"type": "function", "function": _obj(call)}, ensure_ascii=False) + "\n```"


FORMATS: dict[str, tuple[Callable[[Call], str], str]] = {
    "contract": (contract, "contract"),
    "contract_xml": (contract_xml, "contract"),
    "tool_code": (tool_code, "tool_code"),
    "json_bare": (json_bare, "json"),
    "json_pretty": (json_pretty, "json"),
    "json_fenced": (json_fenced, "json"),
    "json_plain_fence": (json_plain_fence, "json"),
    "json_string_arguments": (json_string_arguments, "json"),
    "json_function": (json_function, "json"),
}

# XML parameter values are raw text: keep them free of tags, as the model's would be.
xml_safe = st.text(st.characters(exclude_characters="<"), max_size=12)
values = st.text(max_size=12)
prose = st.text(alphabet="abc XYZ.,!?:;()<>{}[]'-\t\n/\\*#é漢", max_size=30)


@st.composite
def two_calls(draw: st.DrawFn, fmt: str) -> list[Call]:
    text = xml_safe if fmt == "contract_xml" else values
    bash: Call = ("Bash", {"command": draw(text), "timeout": draw(st.integers(-(10**6), 10**6))})
    read: Call = ("Read", {"path": draw(text)})
    patch: Call = ("apply_patch", draw(text))
    return draw(st.permutations([bash, read, patch]))[:2]


def expected(call: Call, recogniser: str) -> tuple[str, str, str]:
    name, args = call
    canonical = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    return name, canonical, recogniser


def check(outs: list[Out], before: str, want: list[tuple[str, str, str]]) -> None:
    assert calls(outs) == want
    assert texts(outs) == before
    assert all(isinstance(o, CallOut) for o in outs[1 if before else 0 :])


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@settings(deadline=None, max_examples=12)
@given(data=st.data())
def test_two_calls_survive_every_split(fmt: str, data: st.DataObject) -> None:
    render, recogniser = FORMATS[fmt]
    pair = data.draw(two_calls(fmt))
    intro = data.draw(prose)
    between = data.draw(st.sampled_from(["\n", "\n\n", " \n", "\n \t\n"] + (["", " "] if fmt == "contract" else [])))
    tail = data.draw(st.sampled_from(["", "\n", "\n\n ", " "]))
    before = intro + "\n" if intro else ""
    reply = before + render(pair[0]) + between + render(pair[1]) + tail
    before = before.rstrip()
    want = [expected(c, recogniser) for c in pair]

    check(run([reply]), before, want)
    check(run([reply], hold_all=True), before, want)
    for i in range(len(reply) + 1):
        check(run([reply[:i], reply[i:]]), before, want)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(reply)), max_size=12)))
    check(run([reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)], strict=True)]), before, want)
    check(run(list(reply)), before, want)


@settings(deadline=None, max_examples=12)
@given(data=st.data())
def test_two_calls_in_one_tool_code_fence(data: st.DataObject) -> None:
    pair = data.draw(two_calls("tool_code"))
    reply = "Both:\n```tool_code\n" + _python_call(pair[0]) + "\n" + _python_call(pair[1]) + "\n```\n"
    want = [expected(c, "tool_code") for c in pair]
    for i in range(len(reply) + 1):
        check(run([reply[:i], reply[i:]]), "Both:", want)


FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<tool_", "```", "```json", "```tool_code", "```python", "````", "{", "}",
    "[", "]", '"', '"name"', '"tool"', '"arguments"', '"input"', ": ", ", ", '"Read"', '"Bash"', '"apply_patch"',
    '{"path": "a"}', "\n", "\n\n", " ", "\t", "x", "<", ">", "\\", "Read(", "Bash(", ")", "path=", "'a'", "true",
    "<function=Read>", "<parameter=path>", "</parameter>", "</function>", "\r\n",
]  # fmt: skip
spicy = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=40).map("".join)


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted(c % (len(text) + 1) for c in cuts)
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def outcome(chunks: list[str]) -> tuple[list[Out], tuple[object, ...]]:
    f = ToolCallFilter(TOOLS)
    outs = [o for chunk in chunks for o in f.feed(chunk)] + f.finish()
    return merge_text(outs), (dict(f.recognised), f.parse_failures, f.leaked_as_text)


@settings(deadline=None, max_examples=200)
@given(st.text() | spicy, st.lists(st.integers(0, 10**4), max_size=8))
def test_never_raises_and_keeps_text_exact(text: str, cuts: list[int]) -> None:
    assert texts(run(chunked(text, cuts), {})) == text
    assert texts(run(list(text), {})) == text
    one_shot = recognise(text, TOOLS)
    if not one_shot.calls:
        assert "".join(one_shot.text) == text


@settings(deadline=None, max_examples=200)
@given(spicy, st.lists(st.integers(0, 10**4), max_size=8))
def test_chunking_never_changes_the_result(text: str, cuts: list[int]) -> None:
    assert outcome(chunked(text, cuts)) == outcome([text])


@settings(deadline=None, max_examples=50)
@given(spicy)
def test_hold_all_emits_nothing_before_finish(text: str) -> None:
    f = ToolCallFilter(TOOLS, hold_all=True)
    assert [o for ch in text for o in f.feed(ch)] == []
    f.finish()
