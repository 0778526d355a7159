"""The key picked up from a cached prefix equals the key of the whole conversation hashed at once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from common.conversation import ImagePart, Message, TextPart, ToolCallRecord, ToolSpec
from sidecar import session_key
from sidecar.session_key import KeyChain, _canonical_args, _parts, conversation_key, merge_assistant_runs


def _whole_key(fingerprint: str, tools: Sequence[ToolSpec], messages: Sequence[Message]) -> str:
    """The definition: one ``json.dumps`` of everything, one SHA-256."""
    positions: dict[str, int] = {}
    instruction = "\n\n".join(t for m in messages if m.role in ("system", "developer") if (t := m.text().strip()))
    body: list[object] = []
    for msg in merge_assistant_runs([m for m in messages if m.role not in ("system", "developer")]):
        calls: list[object] = []
        for call in msg.tool_calls:
            positions.setdefault(call.id, len(positions))
            calls.append([positions[call.id], call.name, call.kind, _canonical_args(call.arguments, call.kind)])
        entry: list[object] = [msg.role, _parts(msg)]
        if calls:
            entry.append(calls)
        if msg.role == "tool":
            cid = msg.tool_call_id
            entry.append([None if cid is None else positions.get(cid, cid), msg.is_error])
        body.append(entry)
    spec = [[t.name, t.kind, t.description, _canonical_args(t.parameters, "function")] for t in tools]
    payload = json.dumps([fingerprint, spec, instruction, body], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


_TEXT = st.sampled_from(["", "hi", "héllo 中文 ", "  ", "x\n", '{"a": 1}', "😀"])
_ID = st.sampled_from(["c1", "c2", "c3", "toolu_9"])
_ARGS = st.sampled_from(["{}", '{"b": 2, "a": [1, "ü"]}', "not json", "  "])
_CALL = st.builds(ToolCallRecord, id=_ID, name=st.sampled_from(["Bash", "Read"]), arguments=_ARGS)
_PART = st.one_of(st.builds(TextPart, text=_TEXT), st.builds(ImagePart, source=st.sampled_from(["", "http://i"])))
_MESSAGE = st.one_of(
    st.builds(Message, role=st.sampled_from(["user", "system", "developer"]), content=st.lists(_PART, max_size=2)),
    st.builds(
        Message, role=st.just("assistant"), content=st.lists(_PART, max_size=2), tool_calls=st.lists(_CALL, max_size=2)
    ),
    st.builds(
        Message,
        role=st.just("tool"),
        content=st.lists(_PART, max_size=1),
        tool_call_id=st.one_of(st.none(), _ID),
        is_error=st.booleans(),
    ),
)
_TOOLS = st.lists(st.builds(ToolSpec, name=st.sampled_from(["Bash", "Read"]), parameters=_ARGS), max_size=2)


@settings(max_examples=300, deadline=None)
@given(
    fingerprint=st.sampled_from(["", "fp", "fp2"]),
    tools=_TOOLS,
    messages=st.lists(_MESSAGE, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=12), max_size=4),
)
def test_a_growing_conversation_keys_as_if_hashed_whole(
    fingerprint: str, tools: list[ToolSpec], messages: list[Message], cuts: list[int]
) -> None:
    # Prefixes first (as turns arrive), then the whole: later calls pick up what earlier ones left.
    for cut in [*sorted(cuts), len(messages)]:
        prefix = messages[:cut]
        assert conversation_key(fingerprint, tools, prefix) == _whole_key(fingerprint, tools, prefix)
    assert conversation_key(fingerprint, tools, messages) == _whole_key(fingerprint, tools, messages)


def test_a_resent_history_is_not_serialised_again() -> None:
    messages = [Message(role="user", content=[TextPart(f"turn {i}")]) for i in range(50)]
    first = conversation_key("fp", [], messages)
    dumped: list[object] = []
    original = session_key._dumps

    def counting(value: object) -> str:
        dumped.append(value)
        return original(value)

    session_key._dumps = counting
    try:
        grown = [*messages, Message(role="assistant", content=[TextPart("ok")])]
        assert conversation_key("fp", [], grown) == _whole_key("fp", [], grown)
    finally:
        session_key._dumps = original
    assert first == _whole_key("fp", [], messages)
    assert len(dumped) == 2  # the head and the one new entry


@settings(max_examples=300, deadline=None)
@given(
    fingerprint=st.sampled_from(["", "fp"]),
    tools=_TOOLS,
    messages=st.lists(_MESSAGE, max_size=12),
    reply=st.builds(
        Message, role=st.just("assistant"), content=st.lists(_PART, max_size=2), tool_calls=st.lists(_CALL, max_size=2)
    ),
)
def test_one_chain_gives_the_history_key_a_turn_claims_and_the_key_it_stores_under(
    fingerprint: str, tools: list[ToolSpec], messages: list[Message], reply: Message
) -> None:
    """A turn keys its history (everything up to the last assistant message) and, after the answer, the whole
    conversation with the reply; both come from one chain and equal keys of those message lists hashed whole."""
    chain = KeyChain(fingerprint, tools, messages)
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    assert chain.history_key(messages[: last + 1]) == _whole_key(fingerprint, tools, messages[: last + 1])
    stored = merge_assistant_runs([*messages, reply])
    assert chain.extended(reply).key() == _whole_key(fingerprint, tools, stored)
    assert chain.key() == _whole_key(fingerprint, tools, messages)
