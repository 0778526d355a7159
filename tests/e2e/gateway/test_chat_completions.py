"""``/v1/chat/completions`` end to end: the real gateway, the real simulator, the openai SDK and raw HTTP.

References: docs/dialects.md §2.3 (the stream order), docs/dialects.md §1.2 (the commit rule).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import wait_for
from tests.support.gateway import Gateway, alive, sse_data

SCENARIO = {
    "turns": [
        {"match": "slow stream", "reply": [{"text": "part one "}, {"delay_ms": 4000}, {"text": "part two"}]},
        {"match": "very slow", "reply": [{"text": "begin "}, {"delay_ms": 60000}, {"text": "never"}]},
    ]
}


def chunks_of(body: str) -> list[dict[str, Any]]:
    return [json.loads(d) for d in sse_data(body) if d != "[DONE]"]


def assert_chat_stream(body: str, *, include_usage: bool = False) -> list[dict[str, Any]]:
    """Every applicable rule of docs/dialects.md §2.3 on a successful stream."""
    data = sse_data(body)
    assert data[-1] == "[DONE]", "the last data line is [DONE]"
    assert body.rstrip("\n").endswith("data: [DONE]"), "nothing follows [DONE]"
    assert data.count("[DONE]") == 1
    chunks = chunks_of(body)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1, "same id, created and model"
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in with_choices[1:]), "role only on the first chunk"
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices]
    assert all(f is None for f in finishes[:-1]) and finishes[-1] is not None, "exactly one final finish_reason"
    assert all("error" not in c for c in chunks)
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks)
    return chunks


def stream_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def expected_reply(gw: Gateway, turn: int = -1) -> str:
    """The simulator's default reply for a turn, recomputed from its journal."""
    from sidecar.simulator.render import default_reply

    finishes = {
        e["params"]["requestId"]: e["params"]["sessionId"]
        for e in gw.journal_lines()
        if e.get("dir") == "out" and e.get("method") == "chat/finish"
    }
    asks = gw.asks()
    target = asks[turn]
    session = finishes[target["requestId"]]
    upto = asks[: asks.index(target) + 1]
    questions = [a["questionText"] for a in upto if finishes.get(a["requestId"]) == session]
    return default_reply(session, questions)


@pytest.fixture
def gw(gateway_factory: Any) -> Gateway:
    return gateway_factory(scenario=SCENARIO, env={"ADMIN_TOKEN": "adm-tok"})  # type: ignore[no-any-return]


def test_openai_sdk_create_stream_and_helper(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "hello from the sdk"}]
    done = client.chat.completions.create(model="gpt-4o", messages=msgs)  # type: ignore[arg-type]
    assert done.object == "chat.completion" and done.model == "gpt-4o"
    assert done.choices[0].message.content == expected_reply(gw)
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0

    parts = client.chat.completions.create(model="gpt-4o", messages=msgs, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    assert text == expected_reply(gw)

    with client.chat.completions.stream(model="auto", messages=msgs) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    assert final.choices[0].message.content == expected_reply(gw)


def test_raw_stream_meets_the_checklist(gw: Gateway) -> None:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "raw stream please"}]}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache, no-transform"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-request-id"] and r.headers["x-lingma-instance"] == "inst-0"
        raw = r.read().decode()
    assert stream_text(assert_chat_stream(raw)) == expected_reply(gw)

    body["stream_options"] = {"include_usage": True}
    raw = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30).text
    assert_chat_stream(raw, include_usage=True)


def test_non_stream_shape_and_request_id(gw: Gateway) -> None:
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}], "unknown_field": {"x": 1}},
        headers={"x-request-id": "my-req-1"},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "my-req-1"
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["finish_reason"] == "stop"
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        (b"not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"model": 5, "messages": []}', "application/json", 400),
        (b'{"model": "m", "messages": []}', "application/json", 400),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "x"}]}', "application/json", 400),
        (b'{"model": "m", "messages": "hello"}', "application/json", 400),
        (
            b'{"model": "m", "max_tokens": 1000000000000000000000000000000, "messages": [{"role": "user", "content": "x"}]}',
            "application/json",
            400,
        ),
        (b"", "application/json", 400),
        (b"x" * (20 * 1024 * 1024), "application/json", 413),
    ],
)
def test_bad_input_gets_a_4xx_openai_envelope(gw: Gateway, content: bytes, ctype: str, status: int) -> None:
    r = httpx.post(gw.url + "/v1/chat/completions", content=content, headers={"content-type": ctype}, timeout=30)
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert "Traceback" not in r.text


def test_kill_the_simulator_mid_stream(gw: Gateway) -> None:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "very slow please"}]}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for line in lines:
            if '"content":"begin' in line.replace(" ", ""):
                break
        pid = gw.lingma_pid()
        assert pid is not None
        import os

        os.kill(pid, signal.SIGKILL)
        rest = "\n".join(lines)
    data = sse_data(rest)
    assert data[-1] == "[DONE]"
    errors = [json.loads(d) for d in data if d != "[DONE]" and "error" in json.loads(d)]
    assert len(errors) == 1 and errors[0]["error"]["type"] == "server_error"
    assert errors[0]["error"]["code"] == "upstream_unavailable"
    assert all(json.loads(d)["choices"][0]["finish_reason"] is None for d in data if d != "[DONE]" and "choices" in json.loads(d))  # fmt: skip

    def recovered() -> bool:
        res = httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "after"}]}, timeout=30)  # fmt: skip
        return res.status_code == 200

    wait_for(recovered, 30, 0.2, what="a successful turn after the restart")


def test_split_mode_survives_a_sidecar_restart(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory(mode="split", routes="openai_chat,models")
    msgs = {"model": "auto", "messages": [{"role": "user", "content": "split"}]}
    assert httpx.post(gw.url + "/v1/chat/completions", json=msgs, timeout=30).status_code == 200
    gw.sidecar.kill()
    gw.sidecar.wait()
    for stream in (False, True):
        started = time.monotonic()
        r = httpx.post(gw.url + "/v1/chat/completions", json={**msgs, "stream": stream}, timeout=10)
        assert time.monotonic() - started < 2, "a lost sidecar is answered at once"
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "sidecar_unavailable"
    pid = gw.lingma_pid()
    assert pid is not None, "the killed sidecar's Lingma left its pidfile"
    gw.start_sidecar()
    wait_for(lambda: not alive(pid), 20, what="the orphaned simulator to be ended")
    wait_for(lambda: httpx.get(gw.url + "/readyz", timeout=5).status_code == 200, 60, 0.1, what="readiness")
    r = httpx.post(gw.url + "/v1/chat/completions", json=msgs, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith("sim: turn 1")


def test_lingma_bin_pointing_at_the_simulator_gives_the_same_results(gateway_factory: Any) -> None:
    import shutil
    import sys
    from pathlib import Path

    sim = str(Path(sys.executable).with_name("lingma-sim"))
    if not Path(sim).exists():
        sim = shutil.which("lingma-sim") or ""
    gw: Gateway = gateway_factory(simulator_flag=False, env={"LINGMA_BIN": sim})
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "via LINGMA_BIN"}]}, timeout=30)  # fmt: skip
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == expected_reply(gw)


def test_sigterm_with_five_open_streams(gw: Gateway) -> None:
    results: list[str] = []
    opened = threading.Semaphore(0)

    def consume() -> None:
        body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "slow stream now"}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=60) as r:
            out = []
            for line in r.iter_lines():
                out.append(line)
                if "part one" in line:
                    opened.release()
            results.append("\n".join(out))

    threads = [threading.Thread(target=consume) for _ in range(5)]
    for t in threads:
        t.start()
    for _ in threads:
        assert opened.acquire(timeout=30)
    lingma = gw.lingma_pid()
    gw.signal_main(signal.SIGTERM)
    for t in threads:
        t.join(60)
    assert len(results) == 5
    for body in results:
        data = sse_data(body)
        assert data[-1] == "[DONE]", body
        assert any('"finish_reason":"stop"' in d or '"error"' in d for d in data)
    assert gw.main.wait(30) == 0
    assert lingma is not None
    wait_for(lambda: not alive(lingma), 10, what="the simulator to exit")
    assert not any(p.poll() is None for p in gw.procs)


def test_no_secret_in_any_log(gateway_factory: Any) -> None:
    key, admin = "sk-live-SECRETKEY-1234567890", "adm-SECRETTOKEN-0987654321"
    gw: Gateway = gateway_factory(env={"API_KEYS": f"other-key,{key}", "ADMIN_TOKEN": admin, "LOG_LEVEL": "DEBUG"})
    msgs = {"model": "auto", "messages": [{"role": "user", "content": "secret test"}]}
    assert httpx.post(gw.url + "/v1/chat/completions", json=msgs, timeout=30).status_code == 401
    bad = httpx.post(
        gw.url + "/v1/chat/completions", json=msgs, headers={"authorization": f"Bearer {key}x"}, timeout=30
    )
    assert bad.status_code == 401 and key not in bad.text
    ok = httpx.post(gw.url + "/v1/chat/completions", json=msgs, headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert ok.status_code == 200
    assert (
        httpx.post(gw.url + "/v1/chat/completions", json=msgs, headers={"x-api-key": key}, timeout=30).status_code
        == 200
    )
    assert (
        httpx.get(gw.url + "/internal/stats", headers={"authorization": f"Bearer {key}"}, timeout=10).status_code == 401
    )
    stats = httpx.get(gw.url + "/internal/stats", headers={"authorization": f"Bearer {admin}"}, timeout=10)
    assert stats.status_code == 200 and stats.json()["version"] == 1
    assert httpx.get(gw.url + "/metrics", headers={"x-api-key": key}, timeout=10).status_code == 200
    assert httpx.get(gw.url + "/metrics", timeout=10).status_code == 401
    pid = gw.lingma_pid()
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    assert key not in environ and admin not in environ, "the Lingma process never sees the gateway's secrets"
    gw.stop()
    logs = gw.logs()
    assert "secret test" in gw.journal.read_text()  # the turn really happened
    assert logs, "there are logs to search"
    for secret in (key, admin, "SECRETKEY", "SECRETTOKEN"):
        assert secret not in logs


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_before_the_answer_stops_the_upstream_turn(gw: Gateway, stream: bool) -> None:
    """Non-stream (and a stream before its commit) must still tell Lingma to stop when the caller leaves."""
    import socket

    def count(method: str) -> int:
        return len([e for e in gw.journal_lines() if e.get("dir") == "in" and e.get("method") == method])

    asks, stops = count("chat/ask"), count("chat/stop")
    body = json.dumps(
        {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "very slow please"}]}
    )
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    with socket.create_connection(("127.0.0.1", gw.port)) as conn:
        conn.sendall(request.encode())
        wait_for(lambda: count("chat/ask") > asks, 10, what="the turn to reach Lingma")
    wait_for(lambda: count("chat/stop") > stops, 10, what="chat/stop after the client left")
