"""Session keys hash what a conversation means: dialect spelling must not matter, content must."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from common.conversation import ImagePart, Message, TextPart, ToolCallRecord, ToolSpec
from sidecar.session_key import conversation_key, merge_assistant_runs, reply_message

TOOLS = [ToolSpec(name="Bash", parameters='{"type": "object"}')]

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
_args = st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=8), st.booleans()), max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """A user/assistant/tool exchange with calls whose ids are dialect-specific."""
    messages: list[Message] = []
    for n in range(draw(st.integers(1, 4))):
        messages.append(Message(role="user", content=[TextPart(draw(_text) + f" u{n}")]))
        args = draw(st.lists(_args, max_size=2))
        calls = [ToolCallRecord(id=f"call_{n}_{i}", name="Bash", arguments=json.dumps(a)) for i, a in enumerate(args)]
        messages.append(Message(role="assistant", content=[TextPart(draw(_text))], tool_calls=calls))
        for call in calls:
            messages.append(Message(role="tool", tool_call_id=call.id, content=[TextPart(draw(_text))]))
    return messages


def key(messages: list[Message], tools: list[ToolSpec] = TOOLS, fingerprint: str = "fp") -> str:
    return conversation_key(fingerprint, tools, messages)


def respell(messages: list[Message], prefix: str) -> list[Message]:
    """The same conversation as another dialect sends it: other call ids, split text, reformatted JSON."""
    ids = {c.id: prefix + c.id[::-1] for m in messages for c in m.tool_calls}
    out: list[Message] = []
    for m in messages:
        text = m.text()
        parts: list[TextPart | ImagePart] = [
            TextPart(text[: len(text) // 2]),
            TextPart(text[len(text) // 2 :] + "  \n"),
        ]
        calls = [
            ToolCallRecord(id=ids[c.id], name=c.name, arguments=json.dumps(json.loads(c.arguments), indent=2))
            for c in m.tool_calls
        ]
        out.append(
            Message(
                role=m.role,
                content=parts,
                tool_calls=calls,
                tool_call_id=ids.get(m.tool_call_id or "", m.tool_call_id),
            )
        )
    return out


@given(conversations(), st.sampled_from(["toolu_", "fc_", "call_"]))
def test_the_key_ignores_how_a_dialect_spells_the_conversation(messages: list[Message], prefix: str) -> None:
    assert key(respell(messages, prefix)) == key(messages)


@given(conversations())
def test_splitting_an_assistant_turn_into_items_keeps_the_key(messages: list[Message]) -> None:
    split: list[Message] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            split.append(Message(role="assistant", content=m.content))
            split.extend(Message(role="assistant", tool_calls=[c]) for c in m.tool_calls)
        else:
            split.append(m)
    assert key(split) == key(messages)


@given(conversations(), _text)
def test_instructions_fold_into_one_wherever_they_sit(messages: list[Message], system: str) -> None:
    system = system.strip() or "be brief"
    first = [Message(role="system", content=[TextPart(system)]), *messages]
    developer = [*messages[:1], Message(role="developer", content=[TextPart(system + "\n")]), *messages[1:]]
    assert key(first) == key(developer)
    assert key(first) != key(messages)


@given(conversations(), _text.filter(lambda t: t.strip() != ""))
def test_any_change_of_content_changes_the_key(messages: list[Message], extra: str) -> None:
    changed = [
        *messages[:-1],
        Message(
            role=messages[-1].role,
            content=[TextPart(messages[-1].text() + extra)],
            tool_calls=messages[-1].tool_calls,
            tool_call_id=messages[-1].tool_call_id,
        ),
    ]
    assert key(changed) != key(messages)


@given(conversations())
def test_the_key_depends_on_the_api_key_and_the_tools(messages: list[Message]) -> None:
    base = key(messages)
    assert key(messages, fingerprint="other") != base
    assert key(messages, tools=[]) != base
    assert key(messages, tools=[ToolSpec(name="Bash", parameters='{"type":"object"}')]) == base


def test_the_key_is_a_sha256_hex_digest_and_stable() -> None:
    messages = [Message(role="user", content=[TextPart("hi")])]
    assert key(messages) == key(list(messages))
    assert len(key(messages)) == 64 and int(key(messages), 16) >= 0


def test_call_order_and_result_pairing_matter() -> None:
    a = ToolCallRecord(id="x", name="Bash", arguments='{"c": 1}')
    b = ToolCallRecord(id="y", name="Bash", arguments='{"c": 2}')
    asked = Message(role="user", content=[TextPart("go")])

    def with_results(first: str) -> list[Message]:
        return [
            asked,
            Message(role="assistant", tool_calls=[a, b]),
            Message(role="tool", tool_call_id=first, content=[TextPart("one")]),
        ]

    assert key(with_results("x")) != key(with_results("y"))
    swapped = [asked, Message(role="assistant", tool_calls=[b, a])]
    assert key(swapped) != key([asked, Message(role="assistant", tool_calls=[a, b])])


def test_errors_images_and_custom_inputs_are_part_of_the_meaning() -> None:
    ok = Message(role="tool", tool_call_id="x", content=[TextPart("out")])
    failed = Message(role="tool", tool_call_id="x", content=[TextPart("out")], is_error=True)
    assert key([ok]) != key([failed])
    image = Message(role="user", content=[TextPart("see"), ImagePart(source="https://example.com/a.png")])
    assert key([image]) != key([Message(role="user", content=[TextPart("see")])])
    custom = Message(
        role="assistant", tool_calls=[ToolCallRecord(id="p", name="apply_patch", arguments=" a ", kind="custom")]
    )
    trimmed = Message(
        role="assistant", tool_calls=[ToolCallRecord(id="p", name="apply_patch", arguments="a", kind="custom")]
    )
    assert key([custom]) != key([trimmed])  # custom input is raw text, compared as is


def test_merge_joins_only_adjacent_assistant_messages() -> None:
    u = Message(role="user", content=[TextPart("q")])
    a1 = Message(role="assistant", content=[TextPart("one")])
    a2 = Message(role="assistant", tool_calls=[ToolCallRecord(id="c", name="Bash")])
    merged = merge_assistant_runs([u, a1, a2, u, a1])
    assert [m.role for m in merged] == ["user", "assistant", "user", "assistant"]
    assert merged[1].text() == "one" and [c.id for c in merged[1].tool_calls] == ["c"]


def test_the_reply_message_reads_like_the_client_will_send_it_back() -> None:
    call = ToolCallRecord(id="c1", name="Bash", arguments='{"command":"ls"}')
    assert reply_message("", [call]) == Message(role="assistant", tool_calls=[call])
    back = Message(
        role="assistant",
        content=[TextPart("Sure.")],
        tool_calls=[ToolCallRecord(id="toolu_9", name="Bash", arguments='{"command": "ls"}')],
    )
    asked = Message(role="user", content=[TextPart("list")])
    assert key([asked, reply_message("Sure.", [call])]) == key([asked, back])
