"""The simulator process on the wire: command line, framing both ways, handshake methods, signals.

References: docs/lingma-protocol.md §1-§4, §8 and §10.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from .conftest import SimClient, SimFactory, frame


def test_status_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar.simulator", "status", "-o", "json", f"--workDir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(done.stdout) == {"logged_in": False, "version": "2.11.1-sim", "username": "", "user_type": ""}


def test_version_command() -> None:
    script = Path(sys.executable).parent / "lingma-sim"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "sidecar.simulator"]
    done = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "version: 2.11.1-sim"


async def test_start_creates_machine_id_and_ready_log_line(sims: SimFactory) -> None:
    sim = sims()
    await sim.connect()
    machine_id = (sim.work_dir / "cache" / "id").read_text()
    assert uuid.UUID(machine_id)
    log = (sim.work_dir / "logs" / "lingma.log").read_text()
    assert f"Communication servers ready - WebSocket: {sim.socket_port}, HTTP: {sim.http_port}" in log
    assert await sim.stop() == 0

    again = sims()
    await again.connect()
    assert (sim.work_dir / "cache" / "id").read_text() == machine_id


async def test_busy_socket_port_exits_nonzero_at_once(sims: SimFactory) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        sim = sims(socket_port=busy.getsockname()[1])
        assert await sim.wait_exit(10) != 0
    assert "cannot listen" in sim.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_clean_exit_on_signal(sims: SimFactory, sig: signal.Signals) -> None:
    sim = sims()
    client = await sim.connect()
    assert (await client.result("ping")) == {"success": True}
    assert sim.proc is not None
    sim.proc.send_signal(sig)
    assert await sim.wait_exit(10) == 0


async def test_handshake_results(client: SimClient) -> None:
    init = await client.result("initialize", {"processId": None, "clientInfo": {"name": "t", "version": "1"}})
    assert init == {"capabilities": {}, "serverInfo": {"name": "lingma", "version": "2.11.1-sim"}}
    status = await client.result("auth/status")
    assert status["status"] == 2
    assert status["id"] == status["accountId"] != ""
    assert status["token"].startswith("pt-")
    assert status["refreshToken"].startswith("rt-")
    assert status["userType"] == "personal_standard"
    assert (status["cloudType"], status["whitelist"]) == ("cloud", 3)
    assert isinstance(status["expireTime"], int)
    assert await client.result("ping") == {"success": True}


async def test_query_models_shape(client: SimClient) -> None:
    models = await client.result("config/queryModels")
    assert {"chat", "assistant", "inline"} <= set(models)
    entries = [entry for scene in models.values() for entry in scene]
    keys = [entry["key"] for entry in entries]
    assert len(keys) > len(set(keys)), "some key must appear in two scenes"
    by_key = {entry["key"]: entry for entry in entries}
    assert by_key["auto"]["displayName"] == "Auto"
    assert by_key["auto"]["isDefault"] is True
    assert by_key["dashscope_qwen3_coder"]["displayName"] == "Qwen3-Coder"
    assert by_key["dashscope_qwen_max_latest"]["displayName"] == "Qwen-Max"
    assert by_key["dashscope_qwen_plus_20250428_thinking"]["isReasoning"] is True
    for entry in entries:
        assert set(entry) == {
            "key", "displayName", "isDefault", "isReasoning", "isVl", "format", "source", "model", "url", "apiKey",
        }  # fmt: skip
        assert (entry["format"], entry["source"], entry["model"], entry["url"], entry["apiKey"]) == (
            "openai", "system", "", "", "",
        )  # fmt: skip


async def test_bare_json_is_rejected_with_unknown_message_header(client: SimClient) -> None:
    await client.send_raw(json.dumps({"jsonrpc": "2.0", "id": 41, "method": "ping", "params": {}}))
    reply = await client.wait_for(lambda m: m.get("id") == 41)
    assert reply["error"]["message"] == "Unknown message header"
    assert await client.result("ping") == {"success": True}


async def test_frame_split_across_two_messages(client: SimClient) -> None:
    data = frame({"jsonrpc": "2.0", "id": "split", "method": "config/updateEndpoint", "params": {"endpoint": "é✓"}})
    await client.send_raw(data[:7])
    await client.send_raw(data[7:30])
    await client.send_raw(data[30:])
    reply = await client.wait_for(lambda m: m.get("id") == "split")
    assert reply["result"] == {"success": True}
    assert await client.result("config/getEndpoint") == {"endpoint": "é✓"}


async def test_frame_split_inside_a_utf8_character_in_binary_messages(client: SimClient) -> None:
    data = frame({"jsonrpc": "2.0", "id": "bin", "method": "ping", "params": {"x": "日本"}}).encode()
    cut = data.index("日".encode()) + 1
    await client.ws.send(data[:cut])
    await client.ws.send(data[cut:])
    assert (await client.wait_for(lambda m: m.get("id") == "bin"))["result"] == {"success": True}


async def test_two_frames_in_one_message(client: SimClient) -> None:
    one = frame({"jsonrpc": "2.0", "id": "a", "method": "ping", "params": {}})
    two = frame({"jsonrpc": "2.0", "id": "b", "method": "auth/status", "params": {}})
    await client.send_raw(one + two)
    assert (await client.wait_for(lambda m: m.get("id") == "a"))["result"] == {"success": True}
    assert (await client.wait_for(lambda m: m.get("id") == "b"))["result"]["status"] == 2


async def test_params_must_be_an_object(client: SimClient) -> None:
    array = await client.request("auth/status", [])
    assert array["error"]["message"] == "json: cannot unmarshal array into Go value of type definition.EmptyRequest"
    missing = await client.request("ping", omit_params=True)
    assert "error" in missing
    ask = await client.request("chat/ask", ["hi"])
    assert ask["error"]["message"].startswith("json: cannot unmarshal array into Go value of type")


async def test_unknown_method_and_initialized(sims: SimFactory) -> None:
    sim = sims()
    client = await sim.connect()
    unknown = await client.request("no/such/method")
    assert unknown["error"]["code"] == -32601
    await client.send_raw(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    assert await client.result("ping") == {"success": True}
    assert "unknown method: initialized" in (sim.work_dir / "logs" / "lingma.log").read_text()
    assert not [m for m in client.received if m.get("id") is None and "error" in m]


async def test_garbage_never_kills_the_connection(client: SimClient) -> None:
    deep = frame("[" * 100_000 + "]" * 100_000)
    for junk in ["Content-Length: x\r\n\r\n{}", frame("not json"), frame("[1,2]"), frame('{"id":1}'), "\x00", deep]:
        await client.send_raw(junk)
    await client.send_raw(
        frame('{"jsonrpc":"2.0","id":"tool","method":"tool/invokeResult","params":{"toolCallId":"x"}}')
    )
    reply = await client.wait_for(lambda m: m.get("id") == "tool")
    assert reply["result"] == {"errorCode": None, "errorMessage": None}
    assert await client.result("ping") == {"success": True}


async def test_endpoint_persists_across_restart(sims: SimFactory) -> None:
    sim = sims()
    client = await sim.connect()
    assert await client.result("config/getEndpoint") == {"endpoint": ""}
    assert await client.result("config/updateEndpoint", {"endpoint": "https://x.example/algo"}) == {"success": True}
    await sim.stop()
    again = await sims().connect()
    assert await again.result("config/getEndpoint") == {"endpoint": "https://x.example/algo"}


async def test_server_frames_are_packed_and_split_with_quirks(client: SimClient) -> None:
    await client.result("initialize", {})
    for _ in range(4):
        await client.result("ping")
    await client.turn("hello quirks")
    assert any(raw.count("Content-Length: ") >= 2 for raw in client.raw), "no packed message"
    assert any(not raw.startswith("Content-Length: ") for raw in client.raw), "no split message"
    pushes = [m for m in client.received if "method" in m]
    assert pushes
    assert all(re.fullmatch(r"s-\d+", m["id"]) for m in pushes)
    assert any(m["method"] == "window/logMessage" for m in pushes)


async def test_quirks_off_sends_one_frame_per_message(sims: SimFactory) -> None:
    client = await sims(LINGMA_SIM_QUIRKS="0").connect()
    await client.result("initialize", {})
    first = await client.turn("plain one")
    second = await client.turn("plain two", first.session_id)
    assert all(raw.startswith("Content-Length: ") and raw.count("Content-Length: ") == 1 for raw in client.raw)
    assert all(answer["text"] for answer in first.of("chat/answer"))
    assert all(answer["sessionId"] == first.session_id for answer in first.of("chat/answer"))
    assert second.finish["fullAnswer"] == second.text
    assert not any(m.get("method") == "window/logMessage" for m in client.received)


async def test_journal_records_every_message_both_ways(sims: SimFactory, tmp_path: Path) -> None:
    journal = tmp_path / "elsewhere" / "journal.jsonl"
    sim = sims(LINGMA_SIM_JOURNAL=str(journal))
    client = await sim.connect()
    turn = await client.turn("journal me")
    assert await client.result("ping") == {"success": True}
    lines = sim.journal
    assert journal.exists()
    assert all(set(line) <= {"t", "dir", "method", "id", "params", "result", "error"} for line in lines)
    assert all(isinstance(line["t"], float) and line["dir"] in ("in", "out") for line in lines)
    ask = next(line for line in lines if line["dir"] == "in" and line["method"] == "chat/ask")
    assert ask["params"]["questionText"] == "journal me"
    reply = next(line for line in lines if line["dir"] == "out" and line["id"] == ask["id"])
    assert reply["method"] == "chat/ask"
    assert reply["result"]["success"] is True
    sent = [line for line in lines if line["dir"] == "out" and line["method"] == "chat/answer"]
    assert "".join(line["params"]["text"] for line in sent) == turn.text
    finish = next(line for line in lines if line["dir"] == "out" and line["method"] == "chat/finish")
    # The client acked the finish before it sent the ping, and the simulator reads in order.
    acks = [line for line in lines if line["dir"] == "in" and line["id"] == finish["id"]]
    assert acks
    assert acks[0]["method"] == "chat/finish"
    assert acks[0]["result"] is True
