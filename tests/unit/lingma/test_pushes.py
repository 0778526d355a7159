"""PushTracker: which pushes belong to one chat/ask, and what they add."""

from __future__ import annotations

import pytest

from common.errors import QuotaExhaustedError
from sidecar.lingma.errors import StaleSessionError
from sidecar.lingma.events import AnswerText, AskFinished, SessionAssigned, ThinkText, ToolInvoked
from sidecar.lingma.params import ask_params
from sidecar.lingma.pushes import PushTracker
from sidecar.lingma.think import FENCE_CLOSE, fence_open

RID = "r1"


def _turn(session_id: str | None = None) -> PushTracker:
    return PushTracker(request_id=RID, session_id=session_id, instance_id="inst-0")


def _answer(text: str, **extra: object) -> dict[str, object]:
    return {"requestId": RID, "sessionId": "", "text": text, **extra}


def test_ask_params_shape() -> None:
    params = ask_params(request_id="r", question="q", model_key="auto", session_id=None, is_reply=False, mode="agent")
    assert params["sessionId"] == "" and params["mode"] == "agent" and params["sessionType"] == "assistant"
    assert params["extra"] == {"modelConfig": {"key": "auto"}}
    assert params["chatTask"] == "FREE_INPUT" and params["stream"] is True and params["source"] == 1
    chat = ask_params(request_id="r", question="q", model_key="k", session_id="s", is_reply=True, mode="chat")
    assert (chat["sessionType"], chat["mode"], chat["sessionId"], chat["isReply"]) == ("chat", "chat", "s", True)


def test_a_full_turn() -> None:
    turn = _turn()
    events = turn.on_push("session/title/update", {"sessionId": "S", "sessionTitle": "t"}, alone=True)
    events += turn.on_push("chat/answer", _answer(f"hi{fence_open()}hmm{FENCE_CLOSE}"), alone=True)
    events += turn.on_push("chat/answer", _answer(""), alone=True)
    events += turn.on_push("chat/answer", _answer(" there"), alone=True)
    events += turn.on_push(
        "chat/finish", {"requestId": RID, "sessionId": "S", "statusCode": 200, "fullAnswer": ""}, alone=True
    )
    assert events == [
        SessionAssigned("S"),
        AnswerText("hi"),
        ThinkText("hmm"),
        AnswerText(" there"),
        AskFinished("S", f"hi{fence_open()}hmm{FENCE_CLOSE} there", 200, "success"),
    ]
    assert turn.finished


def test_title_without_request_id_is_ours_only_when_alone_or_same_session() -> None:
    turn = _turn()
    assert turn.on_push("session/title/update", {"sessionId": "X"}, alone=False) == []
    assert turn.on_push("session/title/update", {"sessionId": "X"}, alone=True) == [SessionAssigned("X")]
    reused = _turn("S")
    assert reused.on_push("session/title/update", {"sessionId": "S"}, alone=False) == [SessionAssigned("S")]


def test_other_requests_and_other_methods_are_ignored() -> None:
    turn = _turn()
    assert turn.on_push("chat/answer", {"requestId": "other", "text": "x"}, alone=True) == []
    assert turn.on_push("chat/finish", {"statusCode": 200}, alone=True) == []
    assert turn.on_push("chat/process_step_callback", {"requestId": RID, "step": "step_start"}, alone=True) == []
    assert not turn.finished


def test_overwrite_extends_or_is_ignored() -> None:
    turn = _turn()
    turn.on_push("chat/answer", _answer("Hello"), alone=True)
    assert turn.on_push("chat/answer", _answer("Hello, world", overwrite=True), alone=True) == [AnswerText(", world")]
    assert turn.on_push("chat/answer", _answer("Goodbye", overwrite=True), alone=True) == []
    assert turn.raw_answer == "Hello, world"


def test_full_answer_fills_in_missing_chunks() -> None:
    turn = _turn()
    turn.on_push("chat/answer", _answer("par"), alone=True)
    events = turn.on_push("chat/finish", {"requestId": RID, "statusCode": 200, "fullAnswer": "partial"}, alone=True)
    assert events == [AnswerText("tial"), AskFinished("", "partial", 200, "success")]


def test_tool_invoke_becomes_an_event() -> None:
    turn = _turn()
    params = {"requestId": RID, "toolCallId": "t1", "name": "read_file"}
    assert turn.on_push("tool/invoke", params, alone=True) == [ToolInvoked("read_file", "t1")]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"statusCode": 404, "errorCode": "SESSION_NOT_FOUND"}, StaleSessionError),
        ({"statusCode": 429, "errorCode": "QUOTA_EXCEEDED"}, QuotaExhaustedError),
    ],
)
def test_failing_finish_raises_and_ends_the_turn(params: dict[str, object], error: type[Exception]) -> None:
    turn = _turn("S")
    with pytest.raises(error):
        turn.on_push("chat/finish", {"requestId": RID, **params}, alone=True)
    assert turn.finished
