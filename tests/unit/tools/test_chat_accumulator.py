"""Two tool calls split at every position go through the recogniser, the Chat encoder, and openai-python's own
stream accumulator, which must end with exactly those two calls.

References: docs/dialects.md §2.4 (tool_calls delta shape) and openai-python ``ChatCompletionStreamState``.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from common.conversation import ToolSpec
from common.protocol import Event, Finished, Started, TextDelta, ToolCall
from handlers.openai_chat.encoder import ChatChunkEncoder
from sidecar.tools.calls import offered_tools
from sidecar.tools.stream import CallOut, ToolCallFilter

TOOLS = [
    ToolSpec(name="run", parameters=json.dumps({"type": "object", "properties": {"command": {"type": "string"}}})),
    ToolSpec(
        name="edit",
        parameters=json.dumps(
            {"type": "object", "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}
        ),
    ),
]
CALLS = [("run", {"command": 'echo "hi" > out.txt'}), ("edit", {"path": "a.py", "text": "x = 1\nπ"})]

REPLIES = {
    "contract": "Working on it.\n"
    + "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a}, ensure_ascii=False)}\n</tool_call>" for n, a in CALLS),
    "tool_code": "Working on it.\n```tool_code\nrun(command=\"echo \\\"hi\\\" > out.txt\")\n```\n"
    "```tool_code\nedit(path=\"a.py\", text=\"x = 1\\nπ\")\n```",
    "tool_code_positional": "Working on it.\n```tool_code\nrun(\"echo \\\"hi\\\" > out.txt\")\n```\n"
    "```tool_code\nedit(path=\"a.py\", text=\"x = 1\\nπ\")\n```",
    "json": "\n".join(json.dumps({"name": n, "arguments": a}, ensure_ascii=False) for n, a in CALLS),
    "json_fenced": "Working on it.\n"
    + "\n".join(f"```json\n{json.dumps({'name': n, 'arguments': a}, ensure_ascii=False)}\n```" for n, a in CALLS),
}  # fmt: skip


def run_pipeline(pieces: list[str]) -> tuple[str, list[tuple[str, dict[str, object]]]]:
    filt = ToolCallFilter(offered_tools(TOOLS))
    events: list[Event] = []
    index = 0
    for out in [o for p in pieces for o in filt.feed(p)] + filt.finish():
        if isinstance(out, CallOut):
            events.append(ToolCall(index=index, id=f"id{index}", name=out.call.name, arguments=out.call.arguments))
            index += 1
        elif out.text:
            events.append(TextDelta(text=out.text))
    events.append(Finished(reason="tool_calls" if index else "stop"))
    encoder = ChatChunkEncoder(completion_id="chatcmpl-x", model="m", created=1, include_usage=False)
    raw = encoder.start(Started(model="m")) + b"".join(encoder.feed(e) for e in events)
    state = ChatCompletionStreamState()
    for line in raw.decode().split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            state.handle_chunk(ChatCompletionChunk.model_validate_json(line[6:]))
    final = state.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return message.content or "", calls


@pytest.mark.parametrize("fmt", sorted(REPLIES))
def test_two_calls_split_at_every_position(fmt: str) -> None:
    reply = REPLIES[fmt]
    for cut in range(len(reply) + 1):
        text, calls = run_pipeline([reply[:cut], reply[cut:]])
        assert calls == CALLS, (fmt, cut)
        assert text.strip() in ("", "Working on it."), (fmt, cut, text)


@pytest.mark.parametrize("fmt", sorted(REPLIES))
@given(data=st.data())
def test_two_calls_split_anywhere_many_times(fmt: str, data: st.DataObject) -> None:
    reply = REPLIES[fmt]
    cuts = sorted(data.draw(st.sets(st.integers(0, len(reply)), max_size=12)))
    pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)], strict=True)]
    _text, calls = run_pipeline(pieces)
    assert calls == CALLS
