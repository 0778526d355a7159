"""Pure pieces of what the simulator streams: the default reply, tool-call formats, chunking."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from sidecar.simulator import render


def test_default_reply_definition() -> None:
    questions = ["first question", "ignored line\n\n  the newest line  \n\n"]
    sha = hashlib.sha1(json.dumps(questions, separators=(",", ":")).encode()).hexdigest()
    assert render.default_reply("0123456789abcdef", questions) == (
        f"sim: turn 2 of session 01234567; history sha1 {sha[:12]}; you said: the newest line"
    )


def test_default_reply_keeps_unicode_and_cuts_at_sixty_characters() -> None:
    questions = ["é" * 80]
    encoded = json.dumps(questions, separators=(",", ":"), ensure_ascii=False).encode()
    reply = render.default_reply("s", questions)
    assert reply.endswith("you said: " + "é" * 60)
    assert hashlib.sha1(encoded).hexdigest()[:12] in reply


def test_contract_format() -> None:
    text = render.render_tool_call("Bash", {"command": "echo hi > out.txt"}, "contract")
    assert text == '<tool_call>\n{"name": "Bash", "arguments": {"command": "echo hi > out.txt"}}\n</tool_call>'


def test_custom_contract_format() -> None:
    text = render.render_custom_tool_call("apply_patch", "*** Begin Patch")
    assert text == '<tool_call>\n{"name": "apply_patch", "input": "*** Begin Patch"}\n</tool_call>'


def test_tool_code_formats() -> None:
    args = {"path": 'a "b"\n', "n": 3, "ok": True, "none": None, "items": [1.5, False], "m": {"k": "v"}}
    assert render.render_tool_call("edit", args, "tool_code") == (
        '```tool_code\nedit(path="a \\"b\\"\\n", n=3, ok=True, none=None, items=[1.5, False], m={"k": "v"})\n```'
    )
    assert render.render_tool_call("read", {"path": "x.py"}, "tool_code_positional") == (
        '```tool_code\nread("x.py")\n```'
    )


def test_json_formats() -> None:
    assert render.render_tool_call("f", {"a": 1}, "json") == '{"name": "f", "arguments": {"a": 1}}'
    assert render.render_tool_call("f", {"a": "é"}, "json_fenced") == (
        '```json\n{"name": "f", "arguments": {"a": "é"}}\n```'
    )


def test_think_markers() -> None:
    assert render.render_think("hmm") == "\n````think::{THINK_TIME}\nhmm\n````\n"


@given(st.text())
def test_word_chunks_concatenate_back(text: str) -> None:
    chunks = render.chunk_words(text)
    assert "".join(chunks) == text
    assert all(chunks)


@given(st.text(), st.integers(min_value=1, max_value=20))
def test_char_chunks_concatenate_back(text: str, size: int) -> None:
    chunks = render.chunk_chars(text, size)
    assert "".join(chunks) == text
    assert all(len(c) <= size for c in chunks)
