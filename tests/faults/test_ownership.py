"""One gateway per data dir and per socket: its own default socket, a lock, and a clear refusal otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, stop_process, wait_for
from tests.faults.helpers import collect_turn, reply_text, sidecar_of
from tests.support.gateway import Gateway, alive


def _serve(root: Path, data: Path, *, env: dict[str, str], socket: Path | None = None) -> tuple[subprocess.Popen[bytes], str, Path]:  # fmt: skip
    port = free_port()
    log = root / f"serve-{port}.log"
    args = ["serve", "--simulator", "--port", str(port), "--data-dir", str(data)]
    if socket is not None:
        args += ["--socket", str(socket)]
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "handlers", *args], env=env, stdout=out, stderr=out)
    return proc, f"http://127.0.0.1:{port}", log


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_gateways_with_default_sockets_each_run_their_own_sidecar(short_dir: Path) -> None:
    runtime = short_dir / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "GATEWAY_HEARTBEAT_SEC": "0.5"}
    env.pop("GATEWAY_SOCKET", None)
    first, url1, _ = _serve(short_dir, short_dir / "d1", env={**env, "LINGMA_SOCKET_PORT": "23010"})
    second, url2, log2 = _serve(short_dir, short_dir / "d2", env={**env, "LINGMA_SOCKET_PORT": "25010"})
    try:
        wait_for(lambda: _ready(url1), 60, 0.1, what="the first gateway")
        wait_for(lambda: second.poll() is not None or _ready(url2), 60, 0.1, what="the second gateway")
        assert second.poll() is None, log2.read_text()
        sockets = sorted(p.name for p in runtime.iterdir())
        assert len(sockets) == 2 and all(s.startswith("lingma-gateway-") for s in sockets), sockets
        assert sidecar_of(first.pid) != sidecar_of(second.pid)
        r = collect_turn(url2, "openai_chat", [{"role": "user", "content": "whose sidecar?"}])
        assert r.status_code == 200
        journal = short_dir / "d2" / "instances" / "inst-0" / "sim-journal.jsonl"
        assert "whose sidecar?" in journal.read_text(), "the second gateway's turn ran in its own data dir"
        stop_process(first)
        r = collect_turn(url2, "openai_chat", [{"role": "user", "content": "still here?"}])
        assert r.status_code == 200, "stopping one gateway must not take the other's sidecar away"
        assert reply_text("openai_chat", r).startswith("sim: turn 1")
    finally:
        stop_process(first)
        stop_process(second)


def test_a_second_gateway_on_the_same_data_dir_exits_with_a_clear_error(gateways: Any, short_dir: Path) -> None:
    gw: Gateway = gateways()
    env = {**os.environ, "LINGMA_SOCKET_PORT": "27010"}
    proc, _url, log = _serve(short_dir, gw.data, env=env, socket=short_dir / "other.sock")
    try:
        assert proc.wait(60) != 0
    finally:
        stop_process(proc)
    text = log.read_text()
    assert f"the data dir {gw.data} is in use by another gateway" in text, text
    assert "Traceback" not in text
    assert collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "unharmed"}]).status_code == 200


def test_a_second_gateway_on_the_same_socket_exits_with_a_clear_error(gateways: Any, short_dir: Path) -> None:
    gw: Gateway = gateways()
    sidecar = sidecar_of(gw.main.pid)
    proc, _url, log = _serve(short_dir, short_dir / "elsewhere", env=dict(os.environ), socket=gw.socket)
    try:
        assert proc.wait(60) != 0
    finally:
        stop_process(proc)
    text = log.read_text()
    assert f"the socket {gw.socket} is already served by another gateway's sidecar" in text, text
    assert f"pid {sidecar}" in text and str(gw.data) in text
    assert "Traceback" not in text
    assert sidecar is not None and alive(sidecar)
    assert collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "unharmed"}]).status_code == 200
    # What serve told apart: the handshake names the sidecar's pid and data dir (protocol 1.1 and later).
    code = (
        "import sys; from common.client import sidecar_identity; from common.protocol import PROTOCOL_MAJOR as M,"
        " PROTOCOL_MINOR as m; h = sidecar_identity(sys.argv[1]); print(h.pid, h.data_dir, h.major, h.minor, M, m)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(gw.socket)], capture_output=True, text=True, timeout=30)
    pid, data_dir, *versions = out.stdout.split()
    assert (int(pid), data_dir) == (sidecar, str(gw.data.resolve()))
    major, minor, our_major, our_minor = map(int, versions)
    assert (major, minor) == (our_major, our_minor) >= (1, 1)
