"""A dead sidecar: ``serve`` reaps and restarts it; a split handler stays live but not ready."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.faults.helpers import collect_turn, reaped, reply_text, sidecar_of
from tests.support.gateway import Gateway, alive

FIRST = [{"role": "user", "content": "remember the colour teal"}]


def _committed_sessions(gw: Gateway) -> int:
    with sqlite3.connect(gw.data / "session-cache.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])


def _ok(gw: Gateway) -> bool:
    try:
        return (
            collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "probe"}], timeout=10).status_code == 200
        )
    except httpx.HTTPError:
        return False


def test_serve_reaps_and_restarts_a_killed_sidecar_and_keeps_the_session_cache(gateways: Any) -> None:
    gw: Gateway = gateways()
    first = collect_turn(gw.url, "anthropic_messages", FIRST)
    assert first.status_code == 200
    said = reply_text("anthropic_messages", first)
    assert said.startswith("sim: turn 1 of session ")
    session = said.split()[5].rstrip(";")
    old = sidecar_of(gw.main.pid)
    assert old is not None
    # Stores are written behind: wait until the entry is committed, so the kill tests the restart, not the
    # loss window (that a kill inside it costs only a fresh turn is tests/faults/test_session_store.py's).
    wait_for(lambda: _committed_sessions(gw) == 1, 10, 0.02, what="the session entry to be committed")

    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    # While it is away: 503 (529 for Anthropic) in the caller's dialect, at once, never a hang.
    for dialect, status in (("openai_chat", 503), ("anthropic_messages", 529)):
        started = time.monotonic()
        r = collect_turn(gw.url, dialect, [{"role": "user", "content": "during"}], timeout=10)
        assert time.monotonic() - started < 2
        assert r.status_code == status, r.text
        assert r.json()["error"]["type"] in ("server_error", "overloaded_error", "service_unavailable")
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200, "one death is no reason to restart serve"

    wait_for(lambda: _ok(gw), 30, 0.1, what="a turn served by the restarted sidecar")
    recovery = time.monotonic() - killed
    new = sidecar_of(gw.main.pid)
    assert new is not None and new != old
    assert reaped(old), "the killed sidecar must be reaped, not left a zombie"
    logs = gw.logs()
    assert f"the sidecar (pid {old}) was killed by SIGKILL" in logs and "restarting it" in logs
    assert "the sidecar is back" in logs

    # The entry committed before the kill is still there: the follow-up continues the same Lingma session.
    follow = [*FIRST, {"role": "assistant", "content": said}, {"role": "user", "content": "which colour?"}]
    again = collect_turn(gw.url, "anthropic_messages", follow)
    assert again.status_code == 200
    assert reply_text("anthropic_messages", again).startswith(f"sim: turn 2 of session {session}")
    assert gw.asks()[-1]["isReply"] is True
    print(f"\nrecovery after kill -9 of the sidecar: {recovery:.2f}s")


def test_serve_healthz_fails_while_the_sidecar_cannot_come_back(gateways: Any) -> None:
    gw: Gateway = gateways()
    old = sidecar_of(gw.main.pid)
    assert old is not None
    # Something that is not a socket takes the socket's path: every restart refuses to replace it.
    gw.socket.unlink()
    gw.socket.write_text("not a socket\n")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: httpx.get(gw.url + "/healthz", timeout=5).status_code == 503, 40, 0.1, what="/healthz to fail")
    health = httpx.get(gw.url + "/healthz", timeout=5).json()
    assert health["status"] == "unhealthy" and "sidecar" in health["reason"]
    assert httpx.get(gw.url + "/readyz", timeout=5).status_code == 503
    assert "restarting the sidecar failed" in gw.logs()
    assert gw.main.poll() is None, "serve keeps trying; the orchestrator decides"
    # Once the cause is gone, the next attempt brings the sidecar back and /healthz recovers.
    gw.socket.unlink()
    wait_for(lambda: _ok(gw), 40, 0.2, what="the sidecar to come back")
    assert httpx.get(gw.url + "/healthz", timeout=5).json()["status"] == "ok"


def test_split_handler_stays_live_but_not_ready_while_its_sidecar_is_away(gateways: Any) -> None:
    gw: Gateway = gateways(mode="split", routes="openai_chat,models")
    gw.sidecar.kill()
    gw.sidecar.wait()
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200, "restarting a handler cannot help"
    ready = httpx.get(gw.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    pid = gw.lingma_pid()
    gw.start_sidecar()
    if pid is not None:
        wait_for(lambda: not alive(pid), 20, what="the killed sidecar's Lingma to be ended")
    wait_for(lambda: httpx.get(gw.url + "/readyz", timeout=5).status_code == 200, 60, 0.1, what="readiness")
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
