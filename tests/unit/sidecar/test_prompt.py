"""The prompt renderer: a fresh session gets the whole transcript, a reused one only the new turn."""

from __future__ import annotations

from common.conversation import Conversation, ImagePart, Message, TextPart, ToolCallRecord, ToolChoice, ToolSpec
from sidecar.prompt import render, split_turn

BASH = ToolSpec(name="Bash", description="Run a shell command", parameters='{"type": "object"}')


def msg(role: str, text: str = "", **extra: object) -> Message:
    return Message(role=role, content=[TextPart(text)] if text else [], **extra)  # type: ignore[arg-type]


def conv(*messages: Message, tools: list[ToolSpec] | None = None) -> Conversation:
    return Conversation(model="m", messages=list(messages), tools=tools or [])


def test_history_ends_at_the_last_assistant_message() -> None:
    messages = [msg("user", "a"), msg("assistant", "b"), msg("tool", "r", tool_call_id="c"), msg("user", "d")]
    history, new = split_turn(messages)
    assert [m.text() for m in history] == ["a", "b"]
    assert [m.text() for m in new] == ["r", "d"]
    assert split_turn([msg("user", "only")]) == ([], [msg("user", "only")])


def test_a_first_turn_is_instructions_then_the_question() -> None:
    prompt = render(conv(msg("system", "Be brief."), msg("user", "Hello?")), tools=[], choice=ToolChoice())
    assert prompt.full == "Be brief.\n\nHello?"
    assert prompt.reply == "Hello?"
    assert prompt.history == []


def test_a_follow_up_carries_the_history_in_full_and_only_the_new_turn_in_reply() -> None:
    c = conv(msg("developer", "Rules."), msg("user", "one"), msg("assistant", "two"), msg("user", "three"))
    prompt = render(c, tools=[], choice=ToolChoice())
    assert prompt.reply == "three"
    assert prompt.full.startswith("Rules.")
    history = prompt.full[prompt.full.index("<conversation_history>") : prompt.full.index("</conversation_history>")]
    assert "<user>\none\n</user>" in history and "<assistant>\ntwo\n</assistant>" in history
    assert prompt.full.endswith("three")  # the newest turn is always last
    assert [m.text() for m in prompt.history] == ["Rules.", "one", "two"]  # the key folds instructions in


def test_tools_are_offered_only_when_the_choice_allows() -> None:
    c = conv(msg("user", "list files"), tools=[BASH])
    offered = render(c, tools=[BASH], choice=ToolChoice()).full
    assert "<tools>" in offered and "Bash" in offered and "Run a shell command" in offered
    assert render(c, tools=[BASH], choice=ToolChoice(mode="none")).full == "list files"
    assert render(c, tools=[], choice=ToolChoice()).full == "list files"
    required = render(c, tools=[BASH], choice=ToolChoice(mode="required")).full
    assert required != offered and required.endswith("list files")


def test_earlier_calls_and_their_results_are_rendered_with_the_tool_name() -> None:
    call = ToolCallRecord(id="c1", name="Bash", arguments='{"command": "ls"}')
    c = conv(
        msg("user", "look"),
        msg("assistant", "Checking.", tool_calls=[call]),
        msg("tool", "a.txt", tool_call_id="c1"),
        msg("assistant", "Found a.txt."),
        msg("user", "thanks"),
    )
    full = render(c, tools=[BASH], choice=ToolChoice()).full
    assert '"name": "Bash"' in full and "ls" in full
    assert '<tool_response name="Bash" id="c1">\na.txt\n</tool_response>' in full
    assert full.index("Checking.") < full.index("a.txt\n</tool_response>") < full.index("Found a.txt.")


def test_a_new_turn_of_tool_results_is_what_a_reused_session_gets() -> None:
    call = ToolCallRecord(id="c1", name="Bash", arguments="{}")
    c = conv(
        msg("user", "go"), msg("assistant", tool_calls=[call]), msg("tool", "done", tool_call_id="c1", is_error=True)
    )
    prompt = render(c, tools=[BASH], choice=ToolChoice())
    assert prompt.reply == '<tool_response name="Bash" id="c1" error="true">\ndone\n</tool_response>'


def test_images_become_a_visible_placeholder() -> None:
    c = conv(Message(role="user", content=[TextPart("What is this? "), ImagePart(source="https://x/y.png")]))
    reply = render(c, tools=[], choice=ToolChoice()).reply
    assert reply == "What is this? [image: https://x/y.png; images are not visible to this model]"


def test_an_empty_new_turn_asks_to_continue() -> None:
    prompt = render(conv(msg("user", "hi"), msg("assistant", "hello")), tools=[], choice=ToolChoice())
    assert prompt.reply == ""
    assert prompt.full.endswith("Continue.")


def test_instructions_anywhere_are_gathered_at_the_top_and_never_repeated() -> None:
    c = conv(msg("user", "a"), msg("system", "S1"), msg("assistant", "b"), msg("developer", "S2"), msg("user", "c"))
    full = render(c, tools=[], choice=ToolChoice()).full
    assert full.startswith("S1\n\nS2\n\n")
    assert full.count("S1") == 1 and full.count("S2") == 1
