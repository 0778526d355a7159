"""``chat/ask`` against the simulator process: the default reply, sessions, refusals, stop, concurrency.

References: docs/lingma-protocol.md §4.3, §5, §6 and §10.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import uuid

from .conftest import SimClient, SimFactory, Turn, frame


def expected_reply(session_id: str, questions: list[str]) -> str:
    """The documented default reply, recomputed here independently of the simulator's code."""
    history = json.dumps(questions, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    lines = [line.strip() for line in questions[-1].splitlines() if line.strip()]
    newest = lines[-1] if lines else ""
    return (
        f"sim: turn {len(questions)} of session {session_id[:8]}; "
        f"history sha1 {hashlib.sha1(history.encode()).hexdigest()[:12]}; you said: {newest[:60]}"
    )


def assert_sequence(turn: Turn) -> None:
    methods = [p["method"] for p in turn.pushes if p["method"] != "window/logMessage"]
    assert methods[0] == "chat/process_step_callback"
    assert methods[1] == "session/title/update"
    assert set(methods[2:-2]) == {"chat/answer"}
    assert methods[-2:] == ["chat/process_step_callback", "chat/finish"]
    steps = turn.of("chat/process_step_callback")
    assert [(s["step"], s["status"]) for s in steps] == [("step_start", "done"), ("step_end", "done")]


async def test_default_reply_streams_exactly(client: SimClient) -> None:
    question = "You are helpful.\n\nUser: what is the capital of France, asked in a rather long way?\n"
    turn = await client.turn(question)
    assert turn.reply == {"success": True, "errorCode": "", "errorMessage": ""}
    assert_sequence(turn)
    session_id = turn.session_id
    assert uuid.UUID(session_id)
    assert turn.text == expected_reply(session_id, [question])
    answers = turn.of("chat/answer")
    assert len([a for a in answers if a["text"]]) > 3, "the reply is streamed in chunks of a few words"
    assert any(a["text"] == "" for a in answers), "empty chunks occur between real ones"
    for answer in answers:
        assert answer["requestId"] == turn.request_id
        assert (answer["overwrite"], answer["isFiltered"], answer["extra"]) == (False, False, {"sessionType": "chat"})
        assert isinstance(answer["timestamp"], int)
    finish = turn.finish
    assert finish == {
        "requestId": turn.request_id,
        "sessionId": session_id,
        "reason": "success",
        "statusCode": 200,
        "fullAnswer": turn.text,
        "extra": {},
    }
    title = turn.of("session/title/update")
    assert title == [{"sessionId": session_id, "sessionTitle": title[0]["sessionTitle"]}]


async def test_session_id_only_in_title_and_finish(client: SimClient) -> None:
    turn = await client.turn("where does the session id go")
    session_id = turn.session_id
    for push in turn.pushes:
        carries = session_id in json.dumps(push["params"])
        assert carries == (push["method"] in ("session/title/update", "chat/finish")), push


async def test_follow_up_turns_report_history(client: SimClient) -> None:
    questions = ["first question"]
    first = await client.turn(questions[0])
    session_id = first.session_id
    questions.append("second line one\nsecond line two")
    second = await client.turn(questions[1], session_id)
    assert second.text == expected_reply(session_id, questions)
    assert second.finish["fullAnswer"] == "", "every second turn finishes with an empty fullAnswer"
    questions.append("third")
    third = await client.turn(questions[2], session_id)
    assert third.text == expected_reply(session_id, questions)
    assert third.finish["fullAnswer"] == third.text


async def test_history_survives_restart(sims: SimFactory) -> None:
    sim = sims()
    client = await sim.connect()
    first = await client.turn("remember me")
    await sim.stop()
    assert list((sim.work_dir / "cache" / "db").glob(f"{first.session_id}*"))
    again = await sims().connect()
    second = await again.turn("do you remember", first.session_id)
    assert second.text == expected_reply(first.session_id, ["remember me", "do you remember"])


async def test_unknown_session_is_accepted_then_finishes_404(client: SimClient) -> None:
    missing = str(uuid.uuid4())
    turn = await client.turn("hello?", missing)
    assert turn.reply["success"] is True
    assert turn.of("chat/answer") == []
    assert turn.finish == {
        "requestId": turn.request_id,
        "sessionId": missing,
        "reason": "error",
        "statusCode": 404,
        "errorCode": "SESSION_NOT_FOUND",
        "errorMessage": f"session not found: {missing}",
        "fullAnswer": "",
        "extra": {},
    }


async def test_deleted_session_is_forgotten(client: SimClient) -> None:
    first = await client.turn("soon gone")
    assert await client.result("chat/deleteSessionById", {"sessionId": first.session_id}) == {"success": True}
    again = await client.turn("still there?", first.session_id)
    assert again.finish["errorCode"] == "SESSION_NOT_FOUND"


async def test_model_keys(client: SimClient) -> None:
    for key in ("", "auto", "dashscope_qwen_plus_20250428_thinking"):
        turn = await client.turn(f"model {key}", extra={"modelConfig": {"key": key}})
        assert turn.finish["reason"] == "success"
    no_extra = await client.turn("no extra", extra=None)
    assert no_extra.finish["reason"] == "success"
    start = len(client.received)
    _, reply, _ = await client.ask("bad model", extra={"modelConfig": {"key": "gpt-9"}})
    assert reply["success"] is False
    assert reply["errorCode"] == "MODEL_NOT_FOUND"
    await client.result("ping")
    assert not [m for m in client.received[start:] if m.get("method", "").startswith("chat/")]


async def test_logged_out_refuses_chat(sims: SimFactory) -> None:
    sim = sims(LINGMA_SIM_LOGGED_OUT="1")
    client = await sim.connect()
    status = await client.result("auth/status")
    assert status == {"status": 1, "id": "", "accountId": "", "name": "", "token": "", "refreshToken": ""}
    assert await client.result("config/queryModels") == {}
    start = len(client.received)
    _, reply, _ = await client.ask("anyone?")
    assert reply == {"success": False, "errorCode": "NOT_LOGIN", "errorMessage": "user not login"}
    await client.result("ping")
    assert not [m for m in client.received[start:] if "method" in m]
    assert not (sim.work_dir / "cache" / "user").exists()


async def test_logout_then_restart_logs_in_again(sims: SimFactory) -> None:
    sim = sims()
    client = await sim.connect()
    assert await client.result("auth/logout") == {"success": True}
    assert (await client.result("auth/status"))["status"] == 1
    await sim.stop()
    again = await sims().connect()
    assert (await again.result("auth/status"))["status"] == 2


async def test_cache_user_counts_only_with_its_own_machine_id(sims: SimFactory) -> None:
    donor = sims("donor")
    await donor.connect()
    await donor.stop()
    other = sims("other", LINGMA_SIM_LOGGED_OUT="1")
    await other.connect()
    await other.stop()
    shutil.copy(donor.work_dir / "cache" / "user", other.work_dir / "cache" / "user")
    client = await sims("other", LINGMA_SIM_LOGGED_OUT="1").connect()
    assert (await client.result("auth/status"))["status"] == 1
    await client.close()
    shutil.copy(donor.work_dir / "cache" / "id", other.work_dir / "cache" / "id")
    bundle = await sims("other", LINGMA_SIM_LOGGED_OUT="1").connect()
    assert (await bundle.result("auth/status"))["status"] == 2


async def test_concurrent_asks_on_one_connection_and_a_second_connection(sims: SimFactory) -> None:
    sim = sims()
    client = await sim.connect()
    other = await sim.connect()
    questions = [f"question number {i} with several words in it" for i in range(4)]
    turns = await asyncio.gather(*(client.turn(q) for q in questions), other.turn("from the other socket"))
    for question, turn in zip(questions, turns, strict=False):
        mine = [m["params"] for m in client.received if m.get("method") == "chat/answer"]
        text = "".join(a["text"] for a in mine if a["requestId"] == turn.request_id)
        assert text == expected_reply(turn.session_id, [question])
        assert turn.finish["requestId"] == turn.request_id
    assert turns[-1].finish["reason"] == "success"
    assert len({t.session_id for t in turns}) == len(turns)


async def test_agent_mode_is_answered(client: SimClient) -> None:
    turn = await client.turn("agent please", mode="agent", sessionType="assistant")
    assert turn.finish["reason"] == "success"
    assert {a["extra"]["sessionType"] for a in turn.of("chat/answer")} == {"assistant"}


async def test_chat_stop_cancels_the_running_turn(sims: SimFactory) -> None:
    scenario = {"turns": [{"match": "slow", "reply": [{"text": "partial "}, {"delay_ms": 20000}, {"text": "never"}]}]}
    client = await sims(scenario=scenario).connect()
    request_id, reply, start = await client.ask("be slow")
    assert reply["success"] is True
    await client.wait_for(lambda m: m.get("method") == "chat/answer" and m["params"]["text"] == "partial ", start)
    session = await client.wait_for(lambda m: m.get("method") == "session/title/update", start)
    stop = await client.result("chat/stop", {"requestId": request_id, "sessionId": session["params"]["sessionId"]})
    assert stop == {}
    finish = await client.wait_for(client.is_finish(request_id), start, timeout=5)
    assert (finish["params"]["reason"], finish["params"]["statusCode"]) == ("cancelled", 200)
    texts = [m["params"]["text"] for m in client.received[start:] if m.get("method") == "chat/answer"]
    assert "never" not in texts


async def test_chat_stop_right_behind_the_ask_in_one_message(sims: SimFactory) -> None:
    scenario = {"turns": [{"match": "slow", "reply": [{"delay_ms": 20000}, {"text": "never"}]}]}
    client = await sims(scenario=scenario).connect()
    ask = {"jsonrpc": "2.0", "id": "ask", "method": "chat/ask", "params": {"requestId": "r-1", "questionText": "slow"}}
    stop = {"jsonrpc": "2.0", "id": "stop", "method": "chat/stop", "params": {"requestId": "r-1", "sessionId": ""}}
    await client.send_raw(frame(ask) + frame(stop))
    finish = await client.wait_for(client.is_finish("r-1"), timeout=5)
    assert (finish["params"]["reason"], finish["params"]["statusCode"]) == ("cancelled", 200)
    assert (await client.wait_for(lambda m: m.get("id") == "stop"))["result"] == {}
    await client.result("ping")
    assert len([m for m in client.received if m.get("method") == "chat/finish"]) == 1
