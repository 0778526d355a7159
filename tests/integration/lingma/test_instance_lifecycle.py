"""LingmaInstance lifecycle against the simulator: crashes, early exits, timeouts, leftovers, ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import pytest

from common.errors import UpstreamTimeoutError, UpstreamUnavailableError
from sidecar.lingma.events import AnswerText, UpstreamEvent
from sidecar.lingma.pidfile import process_start_time, read_pidfile

from .conftest import InstanceFactory, free_port_pair, read_journal, wait_journal, write_scenario
from .helpers import answer_of, collect

SLOW = [{"match": "slow", "reply": [{"text": "first words "}, {"delay_ms": 20000}, {"text": "never sent"}]}]


def _stop_for(request_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    def seen(entries: list[dict[str, Any]]) -> bool:
        return any(
            e["dir"] == "in" and e["method"] == "chat/stop" and (e.get("params") or {}).get("requestId") == request_id
            for e in entries
        )

    return seen


async def _first_text(turn: AsyncGenerator[UpstreamEvent, None]) -> AnswerText:
    while True:
        event = await anext(turn)
        if isinstance(event, AnswerText):
            return event


async def test_kill_mid_turn_fails_the_turn_and_the_instance_restarts(
    make_instance: InstanceFactory, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path / "slow.json", SLOW)
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)}, restart_delay=0.1)
    await inst.start()
    old_pid = inst.pid
    assert old_pid is not None
    turn = inst.ask(question="slow please", model_key="auto", session_id=None, is_reply=False, mode="chat")
    assert (await _first_text(turn)).text == "first words "
    os.kill(old_pid, signal.SIGKILL)
    with pytest.raises(UpstreamUnavailableError):
        await anext(turn)
    await turn.aclose()
    assert inst.served_total == 0  # the turn the kill ended is not counted as served

    assert await inst.wait_ready(20)
    assert inst.restarts_total == 1 and inst.pid not in (None, old_pid)
    assert inst.last_error is not None and "exited" in inst.last_error
    events = await collect(
        inst.ask(question="are you back", model_key="auto", session_id=None, is_reply=False, mode="chat")
    )
    assert "you said: are you back" in answer_of(events)


async def test_closing_the_turn_early_sends_chat_stop(make_instance: InstanceFactory, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path / "slow.json", SLOW)
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)})
    await inst.start()
    request_id = uuid.uuid4().hex
    turn = inst.ask(
        question="slow please", model_key="auto", session_id=None, is_reply=False, mode="chat", request_id=request_id
    )
    await _first_text(turn)
    await turn.aclose()
    entries = await wait_journal(inst.work_dir, _stop_for(request_id), timeout=1.0)
    stop = next(e for e in entries if e["dir"] == "in" and e["method"] == "chat/stop")
    assert set(stop["params"]) == {"requestId", "sessionId"}
    assert inst.served_total == 0


async def test_cancelling_the_consumer_sends_chat_stop(make_instance: InstanceFactory, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path / "slow.json", SLOW)
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)})
    await inst.start()
    request_id = uuid.uuid4().hex
    got_text = asyncio.Event()

    async def consume() -> None:
        turn = inst.ask(
            question="slow", model_key="auto", session_id=None, is_reply=False, mode="chat", request_id=request_id
        )
        async for event in turn:
            if isinstance(event, AnswerText):
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_journal(inst.work_dir, _stop_for(request_id), timeout=1.0)


async def test_no_finish_within_rpc_timeout(make_instance: InstanceFactory, tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path / "slow.json", SLOW)
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)}, rpc_timeout=1.0)
    await inst.start()
    request_id = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamTimeoutError):
        await collect(
            inst.ask(
                question="slow", model_key="auto", session_id=None, is_reply=False, mode="chat", request_id=request_id
            )
        )
    assert 0.9 <= loop.time() - started < 5
    await wait_journal(inst.work_dir, _stop_for(request_id), timeout=1.0)
    assert inst.state == "ready"


async def test_a_restarted_sidecar_ends_the_lingma_left_behind(make_instance: InstanceFactory, tmp_path: Path) -> None:
    work_dir = tmp_path / "inst-0"
    port = free_port_pair()
    # The first object plays the sidecar that was killed: its process stays up, nobody stops it.
    first = make_instance(work_dir=work_dir, restart_delay=60, first_port=port)
    await first.start()
    old_pid = first.pid
    assert old_pid is not None
    assert read_pidfile(work_dir) == (old_pid, process_start_time(old_pid))

    second = make_instance(work_dir=work_dir, first_port=port)
    await second.start()
    assert second.state == "ready" and second.pid not in (None, old_pid)
    assert process_start_time(old_pid) is None, "the old Lingma is still running"
    assert read_pidfile(work_dir) == (second.pid, process_start_time(second.pid or 0))
    events = await collect(
        second.ask(question="new owner", model_key="auto", session_id=None, is_reply=False, mode="chat")
    )
    assert "you said: new owner" in answer_of(events)
    assert first.state == "restarting"
    await first.stop()
    assert read_pidfile(work_dir) is not None, "stopping the old object removed the new pidfile"


async def test_a_taken_port_moves_to_the_next_pair(make_instance: InstanceFactory) -> None:
    port = free_port_pair()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        inst = make_instance(first_port=port)
        await inst.start()
        assert inst.socket_port is not None and inst.socket_port > port
        assert inst.http_port == inst.socket_port + 500


async def test_stop_ends_the_process_and_removes_the_pidfile(make_instance: InstanceFactory) -> None:
    inst = make_instance()
    await inst.start()
    pid = inst.pid
    assert pid is not None
    await inst.stop()
    assert inst.state == "stopped" and inst.pid is None
    assert process_start_time(pid) is None
    assert read_pidfile(inst.work_dir) is None
    assert any(e["method"] == "initialize" for e in read_journal(inst.work_dir))
    with pytest.raises(UpstreamUnavailableError):
        await inst.auth_status()


async def test_a_binary_that_cannot_start(make_instance: InstanceFactory, tmp_path: Path) -> None:
    bad = tmp_path / "fake-lingma"
    bad.write_text("#!/bin/sh\necho 'listen: address already in use' >&2\nexit 3\n")
    bad.chmod(0o755)
    inst = make_instance()
    inst.binary = str(bad)
    with pytest.raises(UpstreamUnavailableError, match="address already in use"):
        await inst.start()
    assert inst.state == "unhealthy" and inst.last_error is not None


async def test_instances_started_together_get_their_own_ports(make_instance: InstanceFactory) -> None:
    port = free_port_pair()
    instances = [make_instance(instance_id=f"inst-{n}", first_port=port) for n in range(3)]
    await asyncio.gather(*(inst.start() for inst in instances))
    assert len({inst.socket_port for inst in instances}) == 3
    for inst in instances:
        events = await collect(
            inst.ask(question=inst.id, model_key="auto", session_id=None, is_reply=False, mode="chat")
        )
        assert answer_of(events).endswith(f"you said: {inst.id}")
        assert read_journal(inst.work_dir)[0]["method"] == "initialize"
