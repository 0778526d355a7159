"""``lingma-gateway doctor`` on a healthy gateway and on three broken set-ups: its verdicts and exit codes.

Each case runs the real command (a subprocess, as an operator would) with ``--json``; the gateways are real
bundled gateways on the simulator. The unwritable data dir is made read-only for real: a read-only bind mount
in a private mount namespace when running as root (root ignores permission bits), else ``chmod 500``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TESTS_DIR, free_port, wait_for
from tests.support.gateway import Gateway

ADMIN = "adm-doctor"


def doctor(env: dict[str, str], *args: str, wrap: list[str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    cmd = [*(wrap or []), sys.executable, "-m", "handlers", "doctor", "--json", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=TESTS_DIR.parent)
    report = json.loads(done.stdout)
    assert report["blocking"] == sum(c["verdict"] == "fail" for c in report["checks"])
    return done.returncode, {c["name"]: c for c in report["checks"]}


def _flags(gw: Gateway) -> list[str]:
    return ["--simulator", "--data-dir", str(gw.data), "--socket", str(gw.socket), "--port", str(gw.port)]


def test_a_healthy_gateway_passes(gateway_factory: Any) -> None:
    gw = gateway_factory(env={"API_KEYS": "k-doctor"})
    code, checks = doctor(gw.env, *_flags(gw))
    assert code == 0, checks
    for name in ("lingma binary", "data dir", "socket", "ports", "login inst-0", "tokenizer", "versions"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert "a sidecar serves" in checks["socket"]["message"]
    assert "served by a gateway" in checks["ports"]["message"]
    assert "running sidecar answers" in checks["versions"]["message"]
    assert not any(c["verdict"] == "fail" for c in checks.values())


def test_a_missing_binary_blocks_serving(short_dir: Path) -> None:
    env = {**os.environ, "LINGMA_BIN": str(short_dir / "nowhere" / "Lingma"), "GATEWAY_PORT": str(free_port())}
    code, checks = doctor(env, "--data-dir", str(short_dir / "data"), "--socket", str(short_dir / "s.sock"))
    assert code == 1
    binary = checks["lingma binary"]
    assert binary["verdict"] == "fail" and "does not exist" in binary["message"] and "LINGMA_BIN" in binary["fix"]
    assert [n for n, c in checks.items() if c["verdict"] == "fail"] == ["lingma binary"]
    assert checks["data dir"]["verdict"] == "ok" and checks["socket"]["verdict"] == "ok"


def test_a_binary_that_does_not_run_blocks_serving(short_dir: Path) -> None:
    fake = short_dir / "Lingma"
    fake.write_bytes(b"\x7fELF not really a program")
    fake.chmod(0o755)
    env = {**os.environ, "LINGMA_BIN": str(fake), "GATEWAY_PORT": str(free_port())}
    code, checks = doctor(env, "--data-dir", str(short_dir / "data"), "--socket", str(short_dir / "s.sock"))
    assert code == 1
    assert checks["lingma binary"]["verdict"] == "fail" and "does not run" in checks["lingma binary"]["message"]


def _read_only(data: Path) -> list[str]:
    if os.geteuid() != 0:
        data.chmod(0o500)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to make a read-only mount as root")
    quoted = str(data).replace("'", "")
    mount = f"mount --bind '{quoted}' '{quoted}' && mount -o remount,bind,ro '{quoted}' && exec \"$@\""
    return ["unshare", "-m", "sh", "-c", mount, "sh"]


def test_an_unwritable_data_dir_blocks_serving(short_dir: Path) -> None:
    data = short_dir / "data"
    data.mkdir(mode=0o700)
    env = {**os.environ, "GATEWAY_PORT": str(free_port())}
    wrap = _read_only(data)
    try:
        code, checks = doctor(
            env, "--simulator", "--data-dir", str(data), "--socket", str(short_dir / "s.sock"), wrap=wrap
        )
    finally:
        data.chmod(0o700)
    assert code == 1
    verdict = checks["data dir"]
    assert verdict["verdict"] == "fail" and "not writable" in verdict["message"], verdict
    assert "GATEWAY_DATA_DIR" in verdict["fix"]
    assert [n for n, c in checks.items() if c["verdict"] == "fail"] == ["data dir"]


def test_a_logged_out_instance_blocks_serving(gateway_factory: Any, short_dir: Path) -> None:
    gw = Gateway(
        short_dir / "out",
        env={"AUTO_LOGIN_ENABLED": "false", "ADMIN_TOKEN": ADMIN, "API_KEYS": "k-doctor"},
        scenario={"login": {"start_logged_out": True}},
    )
    try:
        gw.start(wait=False)

        def logged_out() -> bool:
            try:
                stats = httpx.get(gw.url + "/internal/stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()
            except (httpx.HTTPError, ValueError):
                return False
            return [i.get("state") for i in stats.get("pool", {}).get("instances", [])] == ["login_required"]

        wait_for(logged_out, 60, 0.1, what="the instance to report that it is logged out")
        code, checks = doctor(gw.env, *_flags(gw))
        assert code == 1
        login = checks["login inst-0"]
        assert login["verdict"] == "fail" and "logged out" in login["message"], login
        assert str(gw.work_dir) in login["fix"]
        assert [n for n, c in checks.items() if c["verdict"] == "fail"] == ["login inst-0"]
    finally:
        gw.stop()
    # With the gateway stopped, doctor asks the binary itself (``status -o json``) about the work dir.
    code, checks = doctor(gw.env, *_flags(gw))
    assert code == 1 and checks["login inst-0"]["verdict"] == "fail"
    assert checks["socket"]["verdict"] in ("ok", "warn")


def test_a_port_taken_by_another_program_blocks_serving(short_dir: Path) -> None:
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**os.environ, "GATEWAY_PORT": str(port)}
        code, checks = doctor(env, "--simulator", "--data-dir", str(short_dir / "d"), "--socket", str(short_dir / "s"))
    assert code == 1 and checks["ports"]["verdict"] == "fail" and "--port" in checks["ports"]["fix"]


def test_a_data_dir_other_users_can_read_warns_without_blocking(short_dir: Path) -> None:
    data = short_dir / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    env = {**os.environ, "GATEWAY_PORT": str(free_port())}
    code, checks = doctor(env, "--simulator", "--data-dir", str(data), "--socket", str(short_dir / "s.sock"))
    assert code == 0, checks
    verdict = checks["data dir"]
    assert verdict["verdict"] == "warn" and "755" in verdict["message"] and verdict["fix"] == f"chmod 700 {data}"
