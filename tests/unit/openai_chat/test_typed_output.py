"""The Chat Completions encoder and fold build the typed shapes of ``schema.py``: what goes out is what
``/openapi.json`` describes, field for field."""

from __future__ import annotations

import msgspec

from common.protocol import Finished, ReasoningDelta, Started, TextDelta, ToolCall, Usage
from handlers.openai_chat.encoder import ChatChunkEncoder, to_completion
from handlers.openai_chat.schema import ChatCompletion, ChatCompletionChunk

EVENTS = [
    ReasoningDelta(text="thinking"),
    TextDelta(text="Hello"),
    ToolCall(index=0, id="a1", name="lookup", arguments='{"q": "' + "x" * 120 + '"}'),
    ToolCall(index=1, id="a2", name="apply_patch", arguments="*** Begin Patch", kind="custom"),
    Finished(usage=Usage(input_tokens=12, cached_input_tokens=4, output_tokens=7, reasoning_tokens=2)),
]


def _chunks(include_usage: bool) -> list[bytes]:
    encoder = ChatChunkEncoder(completion_id="chatcmpl-1", model="m", created=1, include_usage=include_usage)
    body = encoder.start(Started(model="m")) + b"".join(encoder.feed(e) for e in EVENTS)
    lines = [frame.removeprefix(b"data: ") for frame in body.split(b"\n\n") if frame]
    assert lines[-1] == b"[DONE]"
    return lines[:-1]


def test_every_chunk_is_a_typed_chunk_and_usage_follows_the_option() -> None:
    for include_usage in (False, True):
        raw = _chunks(include_usage)
        chunks = [msgspec.json.decode(line, type=ChatCompletionChunk, strict=True) for line in raw]
        assert all(msgspec.json.encode(c) == line for c, line in zip(chunks, raw, strict=True))
        has_usage = [b'"usage"' in line for line in raw]
        assert all(has_usage) if include_usage else not any(has_usage)
    last = msgspec.json.decode(_chunks(True)[-1], type=ChatCompletionChunk)
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 19


def test_the_fold_is_a_typed_completion_that_leaves_out_what_is_absent() -> None:
    answer = to_completion(EVENTS, completion_id="chatcmpl-1", model="m", created=1)
    assert isinstance(answer, ChatCompletion)
    assert msgspec.json.decode(msgspec.json.encode(answer), type=ChatCompletion) == answer
    plain = msgspec.json.decode(
        msgspec.json.encode(to_completion([TextDelta(text="hi"), Finished()], completion_id="c", model="m", created=1))
    )
    message = plain["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "hi", "refusal": None}
    assert list(plain) == ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
