"""A hung Lingma (SIGSTOP) is found by the prober, leaves the rotation, and is restarted."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.support.gateway import alive

from .conftest import HANG_PROBES, KEY_HEADERS, LoginGateway

pytestmark = pytest.mark.e2e


def _pid(gw: LoginGateway, instance: str) -> int:
    pid = int(gw.stats()[instance]["pid"])
    assert pid > 0
    return pid


def test_a_hung_lingma_is_unhealthy_within_seconds_then_restarted(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(wait="ready", env={**HANG_PROBES, "LINGMA_RPC_TIMEOUT": "120"})
    assert gw.chat().status_code == 200
    pid = _pid(gw, "inst-0")
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        # A turn sent to the hung process fails when the prober takes it out, not after LINGMA_RPC_TIMEOUT.
        r = gw.chat("sent into the hang", timeout=60)
        assert r.status_code in (502, 503), r.text
        assert time.monotonic() - stopped_at < 10
        gw.wait_state("inst-0", "unhealthy", timeout=10)
        detected = time.monotonic() - stopped_at
        print(f"hung Lingma detected after {detected:.2f}s")
        assert "liveness probes" in (gw.stats()["inst-0"]["last_error"] or "")
        ready = httpx.get(gw.url + "/readyz", timeout=5)
        assert ready.status_code == 503
        began = time.monotonic()
        r = gw.chat("while unhealthy")
        assert r.status_code == 503 and time.monotonic() - began < 2, r.text
        assert "unhealthy" in r.json()["error"]["message"]
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    gw.wait_state("inst-0", "ready", timeout=30)
    assert not alive(pid), "the hung process was killed"
    after = gw.stats()["inst-0"]
    assert after["unhealthy_total"] == 1 and after["restarts_total"] >= 1 and after["pid"] != pid
    assert httpx.get(gw.url + "/readyz", timeout=5).status_code == 200
    r = gw.chat("back again")
    assert r.status_code == 200, r.text
    metrics = httpx.get(gw.url + "/metrics", headers=KEY_HEADERS, timeout=5).text
    assert 'lingma_gateway_instance_unhealthy_total{instance="inst-0"} 1.0' in metrics
    # A process that answers nothing at all is hung, never excused as busy.
    assert 'lingma_gateway_instance_probes_busy_total{instance="inst-0"} 0.0' in metrics


def test_new_turns_go_to_the_other_instance_while_one_hangs(login_gateways: Any) -> None:
    gw: LoginGateway = login_gateways(
        wait="ready", env={**HANG_PROBES, "INSTANCE_COUNT": "2", "LINGMA_RPC_TIMEOUT": "120"}
    )
    wait_for(lambda: all(i["state"] == "ready" for i in gw.stats().values()), 30, what="both instances ready")
    pid = _pid(gw, "inst-0")
    os.kill(pid, signal.SIGSTOP)
    try:
        gw.wait_state("inst-0", "unhealthy", "restarting", timeout=10)
        for n in range(6):
            r = gw.chat(f"conversation {n}")
            assert r.status_code == 200, r.text
        served = gw.stats()
        assert served["inst-1"]["served_total"] >= 6
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    gw.wait_state("inst-0", "ready", timeout=30)
