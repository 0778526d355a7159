"""The Lingma backend's turns (``sidecar.service`` and ``sidecar.turn``) on a fake instance and an in-memory cache.

What is checked is what a client would notice: which question went to Lingma in which session, what came
back, and whether the next turn can reuse the session. The claim rule: a claimed session goes back to the
cache unless Lingma accepted a turn in it; it is never stored after a forced-choice retry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from common.conversation import Conversation, Message, TextPart, ToolChoice, ToolSpec
from common.errors import (
    InternalError,
    PreviousResponseNotFoundError,
    RateLimitedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from common.protocol import Complete, Event, Finished, Started, TextDelta, ToolCall
from common.settings import Settings
from sidecar.lingma.errors import AskUnansweredError, StaleSessionError
from sidecar.lingma.events import AnswerText, AskAccepted, AskFinished, SessionAssigned, ThinkText
from sidecar.pool import Pool
from sidecar.prompt import FORCED_CALL_NUDGE, render
from sidecar.service import LingmaBackend
from sidecar.session_cache import SessionState
from sidecar.session_key import conversation_key
from sidecar.stats import StatsBook
from sidecar.tokens import count_tokens
from tests.support.fake_lingma import FakeInstance, answer

BASH = ToolSpec(name="Bash", parameters='{"type": "object", "properties": {"command": {"type": "string"}}}')
CALL_TEXT = '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls"}}\n</tool_call>'


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


def assistant(text: str) -> Message:
    return Message(role="assistant", content=[TextPart(text)])


def conv(*messages: Message, **extra: Any) -> Conversation:
    return Conversation(model="auto", messages=list(messages), api_key_fingerprint="fp", **extra)


@pytest.fixture
async def backend() -> AsyncIterator[tuple[LingmaBackend, FakeInstance]]:
    inst = FakeInstance("inst-0")
    settings = Settings(lingma_bin="/nonexistent/lingma", gateway_queue_timeout_sec=0.1)
    stats = StatsBook()
    service = LingmaBackend(
        settings,
        stats,
        pool=Pool(settings, instances=[inst]),
        cache_path=Path(":memory:"),  # type: ignore[list-item]
    )
    await service.cache.open()
    yield service, inst
    await service.pool.stop()
    await service.cache.close()


async def run(service: LingmaBackend, conversation: Conversation) -> list[Event]:
    return [e async for e in service.complete(Complete(conversation=conversation))]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def history_key(conversation: Conversation) -> str:
    """The cache key a turn on ``conversation`` claims: that of its history."""
    return conversation_key("fp", [], render(conversation, tools=[], choice=ToolChoice()).history)


async def take(service: LingmaBackend, conversation: Conversation) -> SessionState | None:
    """The session a turn on ``conversation`` would continue, taken from the cache as such a turn takes it."""
    async with service.cache.claim(history_key(conversation)) as claim:
        claim.spend()
        return claim.state


async def first_turn(service: LingmaBackend, inst: FakeInstance) -> Conversation:
    """Run ``hello`` fresh in session sess-1 and return the follow-up conversation that can reuse it."""
    inst.script([answer("Hi there.", "sess-1")])
    events = await run(service, conv(user("hello")))
    assert text_of(events) == "Hi there."
    return conv(user("hello"), assistant("Hi there."), user("and now?"))


async def test_a_first_turn_is_fresh_and_stored_for_reuse(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    inst.script([answer("Hi there.", "sess-1")])
    events = await run(service, conv(user("hello")))
    started, finished = events[0], events[-1]
    assert isinstance(started, Started) and started.session == "fresh" and started.instance == "inst-0"
    assert started.model == "qwen3-coder"
    assert isinstance(finished, Finished) and finished.reason == "stop"
    assert finished.usage is not None and finished.usage.cached_input_tokens == 0
    assert [(a.is_reply, a.session_id) for a in inst.asks] == [(False, None)]
    assert inst.asks[0].question.endswith("hello")
    stored = await take(service, conv(user("hello"), assistant("Hi there."), user("more")))
    assert stored is not None and stored.session_id == "sess-1"


async def test_a_follow_up_reuses_the_session_and_sends_only_the_new_turn(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([answer("Now this.", "sess-1")])
    events = await run(service, follow)
    started = events[0]
    assert isinstance(started, Started) and started.session == "reused"
    assert started.cached_input_tokens > 0
    ask = inst.asks[-1]
    assert (ask.is_reply, ask.session_id, ask.question) == (True, "sess-1", "and now?")
    assert service.book.session_cache["hits"] == 1
    assert await take(service, follow) is None  # the old entry was taken ...
    after = await take(service, conv(*follow.messages, assistant("Now this."), user("next")))
    assert after is not None and after.session_id == "sess-1"  # ... and the new state stored


async def test_a_stale_session_is_retried_once_in_a_fresh_one(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([[StaleSessionError("session gone")], answer("Fresh answer.", "sess-2")])
    events = await run(service, follow)
    assert text_of(events) == "Fresh answer."
    retry = inst.asks[-1]
    assert [(a.is_reply, a.session_id) for a in inst.asks[-2:]] == [(True, "sess-1"), (False, None)]
    assert "hello" in retry.question and "Hi there." in retry.question and retry.question.endswith("and now?")
    assert service.book.session_cache["stale_retries"] == 1
    assert service.book.session_cache["restored"] == 0
    # The fresh session is what the next turn reuses.
    state = await take(service, conv(*follow.messages, assistant("Fresh answer."), user("next")))
    assert state is not None and state.session_id == "sess-2"


async def test_a_second_stale_answer_is_an_error_not_a_loop(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([[StaleSessionError("gone")], [StaleSessionError("gone again")]])
    with pytest.raises(StaleSessionError):
        await run(service, follow)
    assert len(inst.asks) == 3
    assert await take(service, follow) is None  # a session Lingma forgot is never given back
    assert service.book.session_cache["restored"] == 0


async def test_a_stale_session_after_content_is_not_retried(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([[AskAccepted(), AnswerText("half"), StaleSessionError("gone mid-answer")]])
    events: list[Event] = []
    with pytest.raises(StaleSessionError):
        async for event in service.complete(Complete(conversation=follow)):
            events.append(event)
    assert text_of(events) == "half"
    assert len(inst.asks) == 2
    assert service.book.session_cache["stale_retries"] == 0


async def test_a_claim_goes_back_when_lingma_refused_before_accepting(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([[RateLimitedError("slow down", retry_after_s=7)]])
    with pytest.raises(RateLimitedError):
        await run(service, follow)
    assert service.book.session_cache["restored"] == 1
    assert service.pool.ready() == []  # the instance cools down
    restored = await take(service, follow)
    assert restored is not None and restored.session_id == "sess-1" and restored.instance == "inst-0"


async def test_a_claim_goes_back_when_the_instance_slot_times_out(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    service.pool.limit = 0  # every slot is taken
    with pytest.raises(RateLimitedError):
        await run(service, follow)
    assert inst.asks[-1].question.endswith("hello")  # no second ask was made
    assert service.book.session_cache["restored"] == 1
    restored = await take(service, follow)
    assert restored is not None and restored.session_id == "sess-1"


async def test_a_claim_is_spent_once_lingma_accepted(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([[AskAccepted(), UpstreamError("Lingma failed mid-turn")]])
    with pytest.raises(UpstreamError):
        await run(service, follow)
    assert service.book.session_cache["restored"] == 0
    assert await take(service, follow) is None


async def test_a_claim_goes_back_when_the_client_leaves_before_acceptance(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    stream = service.complete(Complete(conversation=follow))
    assert isinstance(await anext(stream), Started)
    await stream.aclose()  # the handler went away before Lingma was even asked
    assert service.book.session_cache["restored"] == 1
    restored = await take(service, follow)
    assert restored is not None and restored.session_id == "sess-1"


async def test_a_forced_choice_answered_in_prose_is_asked_again_and_never_stored(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    inst.script([answer("I would run ls.", "sess-9"), answer(CALL_TEXT, "sess-9")])
    events = await run(service, conv(user("list files"), tools=[BASH], tool_choice=ToolChoice(mode="required")))
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("Bash", {"command": "ls"})]
    assert text_of(events) == ""  # the prose of the first attempt never reaches the client
    assert isinstance(events[-1], Finished) and events[-1].reason == "tool_calls"
    nudge = inst.asks[1]
    assert (nudge.is_reply, nudge.session_id, nudge.question) == (True, "sess-9", FORCED_CALL_NUDGE)
    assert service.book.tools["forced_retries"] == 1
    assert service.book.session_cache["stored"] == 0


async def test_a_forced_choice_answered_in_prose_twice_fails(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    inst.script([answer("No."), answer("Still no.")])
    with pytest.raises(UpstreamError, match="twice"):
        await run(service, conv(user("list files"), tools=[BASH], tool_choice=ToolChoice(mode="named", name="Bash")))
    assert len(inst.asks) == 2


async def test_a_tool_call_in_an_auto_turn_is_recognised_and_counted(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    inst.script([answer("Let me look.\n" + CALL_TEXT)])
    events = await run(service, conv(user("look"), tools=[BASH]))
    assert text_of(events).strip() == "Let me look."
    [call] = [e for e in events if isinstance(e, ToolCall)]
    assert call.index == 0 and len(call.id) == 24
    assert sum(v for k, v in service.book.tools.items() if k.startswith("recognised_")) == 1


async def test_reasoning_and_usage_are_reported(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    inst.script(
        [[AskAccepted(), SessionAssigned("s"), ThinkText("hmm, "), AnswerText("Yes."), AskFinished("s", "", 200, "")]]
    )
    conversation = conv(user("think"))
    events = await run(service, conversation)
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.usage is not None
    prompt = render(conversation, tools=[], choice=ToolChoice())
    assert finished.usage.input_tokens == count_tokens(prompt.full)
    assert finished.usage.reasoning_tokens == count_tokens("hmm, ")
    assert finished.usage.output_tokens == count_tokens("Yes.") + count_tokens("hmm, ")


async def test_an_unknown_previous_response_is_refused_and_a_known_one_expanded(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    with pytest.raises(PreviousResponseNotFoundError):
        await run(service, conv(user("go on"), previous_response_id="resp_missing"))
    inst.script([answer("First.", "s1"), answer("Second.", "s1")])
    await run(service, conv(user("start"), response_id="resp_1"))
    events = await run(service, conv(user("go on"), previous_response_id="resp_1"))
    assert text_of(events) == "Second."
    ask = inst.asks[-1]
    assert (ask.is_reply, ask.session_id, ask.question) == (True, "s1", "go on")


async def test_count_tokens_counts_the_rendered_prompt_without_asking(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    conversation = conv(user("count me"), tools=[BASH])
    expected = count_tokens(render(conversation, tools=[BASH], choice=ToolChoice()).full)
    assert await service.count_tokens(conversation) == expected
    assert inst.asks == []


async def test_tools_are_left_out_when_the_allowlist_excludes_them() -> None:
    inst = FakeInstance()
    settings = Settings(lingma_bin="/x", tool_allowlist=("Read",))
    service = LingmaBackend(settings, StatsBook(), pool=Pool(settings, instances=[inst]), cache_path=Path(":memory:"))  # type: ignore[list-item]
    await service.cache.open()
    try:
        await run(service, conv(user("hi"), tools=[BASH]))
        assert "Bash" not in inst.asks[0].question
        with pytest.raises(Exception, match="TOOL_ALLOWLIST"):
            await run(service, conv(user("hi"), tools=[BASH], tool_choice=ToolChoice(mode="named", name="Bash")))
    finally:
        await service.cache.close()


async def test_agent_model_names_ask_in_agent_mode(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    service, inst = backend
    await run(service, Conversation(model="lingma-agent", messages=[user("do it")]))
    await run(service, Conversation(model="Qwen3 Coder", messages=[user("chat")]))
    assert [(a.mode, a.model_key) for a in inst.asks] == [("agent", "qwen3-coder"), ("chat", "qwen3-coder")]
    assert [m.key for m in await service.models()] == ["qwen3-coder", "lingma-agent"]
    assert service.readiness() == (True, 1)


async def test_cached_tokens_count_only_while_the_claimed_session_is_used(
    backend: tuple[LingmaBackend, FakeInstance],
) -> None:
    service, inst = backend
    follow = await first_turn(service, inst)
    prompt = render(follow, tools=[], choice=ToolChoice())
    inst.script([answer("Now this.", "sess-1")])
    events = await run(service, follow)
    started, finished = events[0], events[-1]
    cached = count_tokens(prompt.full) - count_tokens(prompt.reply)
    assert isinstance(started, Started) and started.cached_input_tokens == cached > 0
    assert isinstance(finished, Finished) and finished.usage is not None
    assert finished.usage.cached_input_tokens == cached
    # The session is gone: the fresh retry sends the whole transcript, so nothing of it counts as cached.
    again = conv(*follow.messages, assistant("Now this."), user("and then?"))
    inst.script([[StaleSessionError("gone")], answer("Fresh.", "sess-2")])
    finished = (await run(service, again))[-1]
    assert isinstance(finished, Finished) and finished.usage is not None
    assert finished.usage.cached_input_tokens == 0
    assert finished.usage.input_tokens == count_tokens(render(again, tools=[], choice=ToolChoice()).full)


@pytest.fixture
async def on_disk(tmp_path: Path) -> AsyncIterator[tuple[LingmaBackend, FakeInstance, Path]]:
    """The backend with its cache in a real file, which another connection can read."""
    inst = FakeInstance("inst-0")
    settings = Settings(lingma_bin="/nonexistent/lingma", gateway_queue_timeout_sec=0.1)
    path = tmp_path / "cache.sqlite3"
    service = LingmaBackend(settings, StatsBook(), pool=Pool(settings, instances=[inst]), cache_path=path)
    await service.cache.open()
    yield service, inst, path
    await service.pool.stop()
    await service.cache.close()


async def test_a_response_is_on_disk_before_its_terminal_goes_out(
    on_disk: tuple[LingmaBackend, FakeInstance, Path],
) -> None:
    """A client given a response id sends only what follows it: a kill -9 right after must not lose it."""
    service, inst, path = on_disk
    inst.script([answer("First.", "s1")])
    seen: list[tuple[str, str | None]] | None = None
    async for event in service.complete(Complete(conversation=conv(user("start"), response_id="resp_1"))):
        if isinstance(event, Finished):  # read by another connection, as a restarted sidecar would
            with sqlite3.connect(path) as db:
                seen = db.execute("SELECT response_id, parent FROM responses").fetchall()
    assert seen == [("resp_1", None)]


async def test_a_response_sqlite_refuses_ends_the_turn_in_an_error_not_a_lost_id(
    on_disk: tuple[LingmaBackend, FakeInstance, Path],
) -> None:
    service, inst, _ = on_disk
    await service.cache.db.execute("DROP TABLE responses")  # every write of a response now fails
    inst.script([answer("First.", "s1")])
    seen: list[Event] = []
    with pytest.raises(InternalError, match="could not be saved"):
        async for event in service.complete(Complete(conversation=conv(user("start"), response_id="resp_1"))):
            seen.append(event)
    assert text_of(seen) == "First." and not any(isinstance(e, Finished) for e in seen)
    assert service.cache.counters["store_failures"] >= 1


async def test_a_claim_is_spent_when_the_ask_goes_unanswered(backend: tuple[LingmaBackend, FakeInstance]) -> None:
    """Lingma may have added an unanswered question to the session: reusing it would run on another history."""
    service, inst = backend
    follow = await first_turn(service, inst)
    inst.script([[AskUnansweredError("no answer to chat/ask")]])
    with pytest.raises(UpstreamTimeoutError):
        await run(service, follow)
    assert service.book.session_cache["restored"] == 0
    assert await take(service, follow) is None
