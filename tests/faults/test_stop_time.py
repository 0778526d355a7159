"""Stopping is prompt: no process lingers after it has closed everything."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from tests.faults.helpers import collect_turn, sidecar_of
from tests.support.gateway import Gateway, alive


def test_serve_and_its_sidecar_exit_promptly_after_stopping(gateways: Any) -> None:
    gw: Gateway = gateways(env={"LOG_JSON": "true"})
    # A turn loads everything a real run holds (the tokenizer among it), which is what made exits slow.
    assert collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "before stopping"}]).status_code == 200
    sidecar = sidecar_of(gw.main.pid)
    assert sidecar is not None
    sent_wall = time.time()
    sent = time.monotonic()
    gw.signal_main(signal.SIGTERM)
    sidecar_gone = serve_gone = None
    while serve_gone is None and time.monotonic() - sent < 30:
        now = time.monotonic()
        if sidecar_gone is None and not alive(sidecar):
            sidecar_gone = now
        if gw.main.poll() is not None:
            serve_gone = now
        time.sleep(0.005)
    assert sidecar_gone is not None and serve_gone is not None
    stopped_at = next(
        json.loads(line)["ts"]
        for line in gw.log.read_text().splitlines()
        if line.startswith("{") and json.loads(line)["msg"] == "sidecar stopped"
    )
    sidecar_linger = (sent_wall + (sidecar_gone - sent)) - stopped_at
    serve_linger = serve_gone - sidecar_gone
    print(
        f"\nstop: serve {serve_gone - sent:.2f}s, sidecar {sidecar_gone - sent:.2f}s; the sidecar lingered "
        f"{sidecar_linger:.2f}s after 'sidecar stopped', serve {serve_linger:.2f}s after its sidecar"
    )
    assert gw.main.returncode == 0
    assert sidecar_linger < 0.3, "the sidecar has nothing left to do once it says it stopped"
    assert serve_linger < 0.3, "serve has nothing left to do once its sidecar is gone"
    assert serve_gone - sent < 3
