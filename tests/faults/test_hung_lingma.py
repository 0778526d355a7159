"""A hung Lingma: each turn's first-chunk deadline ends it with ``upstream_timeout``; the process is kept."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx

from tests.faults.helpers import DIALECTS, Outcome, collect_turn, stream_turn
from tests.support.gateway import Gateway

FIRST_CHUNK = 2.0
SLOW = {
    "turns": [
        {"match": "dawdle", "reply": [{"delay_ms": 6000}, {"text": "too late"}]},
        {"match": "steady", "reply": [{"text": "first "}, {"delay_ms": 2500}, {"text": "and last"}]},
    ]
}
ADMIN = {"authorization": "Bearer adm"}


def _timeout_error(dialect: str, outcome: Outcome) -> bool:
    """The dialect's own rendering of ``upstream_timeout`` inside a committed stream."""
    if outcome.terminal != "error" or outcome.terminals != 1:
        return False
    if dialect == "openai_chat":
        return bool(outcome.error.get("code") == "upstream_timeout")
    if dialect == "anthropic_messages":
        return bool(outcome.error.get("type") == "timeout_error")
    return bool(outcome.error.get("code") == "server_error")


def _instance(gw: Gateway) -> dict[str, Any]:
    stats = httpx.get(gw.url + "/internal/stats", headers=ADMIN, timeout=10).json()
    return dict(stats["pool"]["instances"][0])


def test_a_stopped_lingma_fails_each_turn_at_its_first_chunk_deadline_and_is_kept(gateways: Any) -> None:
    gw: Gateway = gateways(env={"LINGMA_FIRST_CHUNK_TIMEOUT": str(FIRST_CHUNK), "ADMIN_TOKEN": "adm"})
    pid = gw.lingma_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        outcomes: dict[str, Outcome] = {}
        took: dict[str, float] = {}

        def one(dialect: str) -> None:
            started = time.monotonic()
            outcomes[dialect] = stream_turn(gw.url, dialect, [{"role": "user", "content": f"hello {dialect}"}])
            took[dialect] = time.monotonic() - started

        threads = [threading.Thread(target=one, args=(d,)) for d in DIALECTS]
        for t in threads:
            t.start()
        started = time.monotonic()
        collected = collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "not streamed"}])
        collected_after = time.monotonic() - started
        for t in threads:
            t.join(30)
        # Streams commit at the first heartbeat (0.5 s here), so the deadline shows as the dialect's terminal error.
        for dialect in DIALECTS:
            assert outcomes[dialect].status == 200
            assert _timeout_error(dialect, outcomes[dialect]), (dialect, outcomes[dialect])
            assert FIRST_CHUNK - 0.1 <= took[dialect] < FIRST_CHUNK + 3, took
        # A collected turn has not committed: an HTTP 504 in the OpenAI envelope.
        assert collected.status_code == 504, collected.text
        assert collected.json()["error"]["code"] == "upstream_timeout"
        assert collected_after < FIRST_CHUNK + 3
        assert "sent no first chunk" in gw.logs()
        print(f"\nhung Lingma detected after {max(took.values()):.2f}s (LINGMA_FIRST_CHUNK_TIMEOUT={FIRST_CHUNK})")
    finally:
        os.kill(pid, signal.SIGCONT)
    # The instance was never restarted: the same process serves the next turn.
    after = collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "awake again"}])
    assert after.status_code == 200, after.text
    assert gw.lingma_pid() == pid
    inst = _instance(gw)
    assert inst["pid"] == pid and inst["restarts_total"] == 0 and inst["state"] == "ready"


def test_a_slow_first_chunk_is_a_504_before_commit_and_a_slow_turn_is_not(gateways: Any) -> None:
    gw: Gateway = gateways(
        scenario=SLOW,
        env={"LINGMA_FIRST_CHUNK_TIMEOUT": "1.5", "GATEWAY_HEARTBEAT_SEC": "10", "ADMIN_TOKEN": "adm"},
    )
    pid = gw.lingma_pid()
    outcomes: dict[str, Outcome] = {}
    took: dict[str, float] = {}

    def one(dialect: str) -> None:
        started = time.monotonic()
        outcomes[dialect] = stream_turn(gw.url, dialect, [{"role": "user", "content": "dawdle please"}])
        took[dialect] = time.monotonic() - started

    threads = [threading.Thread(target=one, args=(d,)) for d in DIALECTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for dialect in DIALECTS:
        out = outcomes[dialect]
        assert out.status == 504 and out.terminal == "http_error", (dialect, out)
        assert took[dialect] < 4.5
        if dialect == "anthropic_messages":
            assert out.error["type"] == "timeout_error"
        else:
            assert out.error["code"] == "upstream_timeout"
    # The deadline is for the first chunk only: a turn that starts at once may take longer than it overall.
    out = stream_turn(gw.url, "openai_responses", [{"role": "user", "content": "steady now"}])
    assert out.terminal == "completed" and out.text == "first and last", out
    inst = _instance(gw)
    assert inst["pid"] == pid and inst["restarts_total"] == 0
