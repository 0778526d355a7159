"""Logs an operator can use: an access line per request, a line for each refusal and failure, the writer named."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import httpx

from sidecar.simulator.journal import Journal
from tests.conftest import wait_for
from tests.support.edge_gateway import API_KEY, EdgeGateway
from tests.support.gateway import Gateway

SECRET = "sk-logs-secret-4d21c0"
MARKER = "PURPLE-ELEPHANT-42"
AUTH = {"authorization": f"Bearer {SECRET}"}
SCENARIO = {
    "turns": [
        {"match": "hold the slot", "reply": [{"text": "holding "}, {"delay_ms": 1500}, {"text": "done"}]},
        {"match": "please time out", "reply": [{"delay_ms": 6000}, {"text": "late"}]},
        {"match": "please crash", "reply": [{"text": "going "}, {"crash": True}]},
    ]
}
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (serve|sidecar|handler)\[\d+\] \[[^\]]+\] \S+: ")  # fmt: skip
ACCESS = re.compile(
    r"(serve|handler)\[\d+\] \[(?P<rid>req_[0-9a-f]+|[A-Za-z0-9._:-]+)\] lingma_gateway\.access: 127\.0\.0\.1:\d+ - "
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<ms>\d+\.\d)ms instance=(?P<instance>\S+)$'
)


def _chat(gw: Gateway, text: str, *, stream: bool = False, timeout: float = 30) -> httpx.Response:
    body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": text}]}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=timeout)


def _lines_with(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def test_every_request_refusal_and_failure_leaves_a_line_naming_its_writer(short_dir: Path) -> None:
    env = {
        "API_KEYS": SECRET,
        "GATEWAY_MAX_IN_FLIGHT": "1",
        "GATEWAY_QUEUE_TIMEOUT_SEC": "0.3",
        "LINGMA_RPC_TIMEOUT": "2",
    }
    gw = Gateway(short_dir / "g", scenario=SCENARIO, env=env).start()
    try:
        assert httpx.get(gw.url + "/healthz").status_code == 200
        assert _chat(gw, f"say {MARKER}").status_code == 200
        assert httpx.get(gw.url + "/v1/models", headers={"authorization": "Bearer wrong-key"}).status_code == 401

        started = threading.Event()

        def hold() -> None:
            body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hold the slot"}]}
            with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30) as r:
                for line in r.iter_lines():
                    if "holding" in line:
                        started.set()

        holder = threading.Thread(target=hold)
        holder.start()
        assert started.wait(20)
        refused = _chat(gw, "x")
        holder.join(30)
        assert refused.status_code == 429
        timed_out = _chat(gw, "please time out")
        assert timed_out.status_code == 504
        crashed = _chat(gw, "please crash")
        assert crashed.status_code >= 500
        wait_for(lambda: "restarting" in gw.logs(), 20, what="the restart line")
    finally:
        gw.stop()
    log = gw.log.read_text(errors="replace")  # what the gateway's processes wrote (Lingma keeps its own files)

    for line in log.splitlines():
        if line.strip():
            assert LINE.match(line), f"a line that does not name its writer: {line!r}"
    assert not [line for line in log.splitlines() if " INFO " in line and "uvicorn.error" in line]
    assert SECRET not in log and MARKER not in log

    access = [m for m in (ACCESS.search(line) for line in log.splitlines()) if m]
    requests = [m for m in access if m["path"] != "/readyz"]  # readiness was polled an unknown number of times
    assert len(requests) == 7, [m.group(0) for m in requests]  # one line per request made above
    chat = [m for m in access if m["path"] == "/v1/chat/completions" and m["status"] == "200"]
    assert chat and all(m["instance"] == "inst-0" and m["method"] == "POST" for m in chat)
    assert any(m["path"] == "/v1/models" and m["status"] == "401" for m in access)

    for response, status, code in ((refused, 429, "rate_limited"), (timed_out, 504, "upstream_timeout")):
        rid = response.headers["x-request-id"]
        mine = _lines_with(log, f"[{rid}]")
        assert any(" WARNING serve[" in line and f"answered {status} ({code})" in line for line in mine), mine
        assert any(f'" {status} ' in line and "lingma_gateway.access" in line for line in mine), mine
    rid = timed_out.headers["x-request-id"]
    assert any(" WARNING sidecar[" in line and "upstream_timeout" in line for line in _lines_with(log, f"[{rid}]"))
    rid = crashed.headers["x-request-id"]
    assert any(" WARNING " in line or " ERROR " in line for line in _lines_with(log, f"[{rid}]"))
    assert any(" WARNING sidecar[" in line and "restarting" in line for line in log.splitlines())


def test_a_dead_sidecar_is_a_logged_503_with_the_request_id(short_dir: Path) -> None:
    gw = Gateway(short_dir / "split", mode="split", env={"API_KEYS": SECRET}).start()
    try:
        gw.sidecar.kill()
        r = _chat(gw, "anyone there?")
        assert r.status_code == 503
        rid = r.headers["x-request-id"]
    finally:
        gw.stop()
    mine = _lines_with(gw.log.read_text(errors="replace"), f"[{rid}]")
    assert any(" WARNING handler[" in line and "answered 503 (sidecar_unavailable)" in line for line in mine), mine


def test_json_lines_carry_the_same_fields(tmp_path: Path) -> None:
    gw = EdgeGateway(tmp_path / "json", {"LOG_JSON": "true"}).start()
    try:
        httpx.get(gw.url + "/healthz", headers={"x-request-id": "probe-1"})
        httpx.get(gw.url + "/v1/models?api_key=" + API_KEY, headers={"authorization": f"Bearer {API_KEY}x"})
    finally:
        gw.stop()
    records: list[dict[str, Any]] = [json.loads(line) for line in gw.logs().splitlines() if line.strip()]
    assert records and all(r["proc"] == "handler" and isinstance(r["pid"], int) for r in records)
    access = [r for r in records if r["logger"] == "lingma_gateway.access"]
    probe = next(r for r in access if r["request_id"] == "probe-1")
    assert probe["method"] == "GET" and probe["route"] == "/healthz" and probe["status"] == 200
    assert isinstance(probe["duration_ms"], float) and probe["instance"] == ""
    refused = next(r for r in access if r["route"] == "/v1/models")
    assert refused["status"] == 401 and refused["request_id"].startswith("req_")
    assert API_KEY not in gw.logs()


def test_the_simulator_journal_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "sim-journal.jsonl"
    journal = Journal(path, max_bytes=20_000)
    for n in range(2_000):
        journal.record("in", {"id": n, "method": "chat/ask", "params": {"questionText": "x" * 50}})
    journal.close()
    rotated = path.with_name(path.name + ".1")
    assert path.stat().st_size <= 20_000 and rotated.stat().st_size <= 20_000
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["id"] == 1_999  # the newest lines are kept


def test_a_journal_that_is_not_a_regular_file_is_never_moved(tmp_path: Path) -> None:
    """``LINGMA_SIM_JOURNAL=/dev/null`` (the benchmark's default) must leave the device where it is.

    A FIFO stands in for the device here: moving or removing it would show the same way.
    """
    path = tmp_path / "journal.fifo"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # so that opening it for writing does not block
    try:
        journal = Journal(path, max_bytes=200)
        for n in range(50):
            journal.record("in", {"id": n, "method": "chat/ask", "params": {"questionText": "x" * 50}})
            os.read(reader, 65536)
        journal.close()
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(path.lstat().st_mode), "the pipe is still there, untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.fifo"], "nothing was moved aside"
