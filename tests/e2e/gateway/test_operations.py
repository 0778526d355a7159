"""Operations: probes, metrics, backpressure, bind safety and settings validation, on real processes."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
import threading
from typing import Any

import httpx

from tests.conftest import free_port, wait_for
from tests.support.gateway import Gateway

SLOW = {"turns": [{"match": "hold the slot", "reply": [{"text": "holding "}, {"delay_ms": 3000}, {"text": "done"}]}]}


def test_backpressure_answers_429_with_retry_after(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory(scenario=SLOW, env={"GATEWAY_MAX_IN_FLIGHT": "1", "GATEWAY_QUEUE_TIMEOUT_SEC": "0.3"})
    started = threading.Event()
    finished: list[int] = []

    def hold() -> None:
        body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hold the slot"}]}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if "holding" in line:
                    started.set()
            finished.append(r.status_code)

    thread = threading.Thread(target=hold)
    thread.start()
    assert started.wait(20)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "x"}]}, timeout=10)  # fmt: skip
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    thread.join(30)
    assert finished == [200]
    stats = httpx.get(gw.url + "/metrics", timeout=10).text
    assert "lingma_gateway_rejected_total 1.0" in stats


def test_probes_and_metrics(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory()
    version = importlib.metadata.version("lingma-gateway")
    assert httpx.get(gw.url + "/healthz").json() == {"status": "ok", "version": version}
    ready = httpx.get(gw.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["instances_ready"] == 1
    httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "m"}]}, timeout=30)  # fmt: skip
    httpx.post(gw.url + "/v1/chat/completions", content=b"{", timeout=30)
    text = httpx.get(gw.url + "/metrics").text
    assert 'lingma_gateway_http_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'lingma_gateway_http_requests_total{route="/v1/chat/completions",status="400"} 1.0' in text
    assert 'lingma_gateway_http_request_seconds_bucket{le="+Inf",route="/v1/chat/completions"} 2.0' in text
    assert 'lingma_gateway_instance_state{instance="inst-0",state="ready"} 1.0' in text
    assert "lingma_gateway_sidecar_up 1" in text
    assert f'lingma_gateway_build_info{{python="{platform.python_version()}",version="{version}"}} 1.0' in text


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "handlers", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_open_non_loopback_bind_is_refused_without_keys(short_dir: Any) -> None:
    result = _run(["handler", "models", "--host", "0.0.0.0", "--port", str(free_port()), "--socket", str(short_dir / "x.sock")])  # fmt: skip
    assert result.returncode != 0
    assert "refusing to bind 0.0.0.0" in result.stderr and "--allow-open" in result.stderr


def test_every_bad_setting_is_named_at_start(short_dir: Any) -> None:
    env = {"INSTANCE_COUNT": "zero", "LINGMA_RPC_TIMEOUT": "-5", "API_KEYS": "k-secret-1", "METRICS_PUBLIC": "maybe"}
    result = _run(["handler", "models", "--port", str(free_port()), "--socket", str(short_dir / "x.sock")], env)
    assert result.returncode != 0
    for name in ("INSTANCE_COUNT", "LINGMA_RPC_TIMEOUT", "METRICS_PUBLIC"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr and "k-secret-1" not in result.stderr


def test_a_full_instance_is_a_429_before_commit_and_costs_no_session(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory(
        scenario=SLOW, env={"GATEWAY_INSTANCE_MAX_IN_FLIGHT": "1", "GATEWAY_QUEUE_TIMEOUT_SEC": "0.3"}
    )
    url = gw.url + "/v1/chat/completions"
    first = httpx.post(url, json={"model": "auto", "messages": [{"role": "user", "content": "one"}]}, timeout=30)
    history = [
        {"role": "user", "content": "one"},
        first.json()["choices"][0]["message"],
        {"role": "user", "content": "two"},
    ]
    started = threading.Event()

    def hold() -> None:
        body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hold the slot"}]}
        with httpx.stream("POST", url, json=body, timeout=30) as r:
            for line in r.iter_lines():
                if "holding" in line:
                    started.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert started.wait(20)
    for stream in (True, False):
        r = httpx.post(url, json={"model": "auto", "stream": stream, "messages": history}, timeout=10)
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] and r.json()["error"]["code"] == "rate_limit_exceeded"
    thread.join(30)
    ok = httpx.post(url, json={"model": "auto", "messages": history}, timeout=30)
    assert ok.json()["choices"][0]["message"]["content"].startswith("sim: turn 2 of session")
    assert gw.asks()[-1]["isReply"] is True


def test_an_instance_that_reports_rate_limits_cools_down_then_serves_again(gateway_factory: Any) -> None:
    scenario = {"turns": [{"match": "limit me", "reply": [{"error": {"status": 429, "kind": "rate_limit", "message": "too many requests"}}]}]}  # fmt: skip
    gw: Gateway = gateway_factory(scenario=scenario, env={"GATEWAY_COOLDOWN_MAX_SEC": "2", "ADMIN_TOKEN": "adm"})
    url = gw.url + "/v1/chat/completions"
    limited = httpx.post(url, json={"model": "auto", "messages": [{"role": "user", "content": "limit me"}]}, timeout=30)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    stats = httpx.get(gw.url + "/internal/stats", headers={"authorization": "Bearer adm"}, timeout=10).json()
    inst = stats["pool"]["instances"][0]
    assert inst["state"] == "cooling_down" and inst["cooldown_until"] is not None
    body = {"model": "auto", "messages": [{"role": "user", "content": "anything"}]}
    blocked = httpx.post(url, json=body, timeout=30)
    assert blocked.status_code == 503 and blocked.json()["error"]["code"] == "service_unavailable"
    assert 1 <= int(blocked.headers["retry-after"]) <= 2
    assert httpx.post(gw.url + "/v1/messages", json={**body, "max_tokens": 10}, headers={"anthropic-version": "2023-06-01"}, timeout=30).status_code == 529  # fmt: skip
    # With no traffic at all, the instance is probed when its cool-down ends and becomes ready again.
    wait_for(
        lambda: httpx.get(gw.url + "/readyz", timeout=5).status_code == 200, 10, 0.1, what="the end of the cool-down"
    )
    assert httpx.post(url, json=body, timeout=30).status_code == 200
