"""Private files: the data dir 0700 and everything in it owner-only, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stop_process, wait_for
from tests.faults.helpers import collect_turn, foreign_owner
from tests.support.gateway import Gateway


def _loose(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that a group or other user could read or enter."""
    out = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode & 0o077:
            out.append(f"{path.relative_to(root.parent)} {mode:o}")
    return out


def test_a_fresh_data_dir_is_private_whatever_the_umask(gateways: Any) -> None:
    old = os.umask(0o022)
    try:
        gw: Gateway = gateways()
    finally:
        os.umask(old)
    assert collect_turn(gw.url, "openai_chat", [{"role": "user", "content": "a secret"}]).status_code == 200
    assert stat.S_IMODE(gw.data.stat().st_mode) == 0o700
    assert (gw.data / "session-cache.sqlite3").exists() and (gw.work_dir / "lingma.pid").exists()
    assert _loose(gw.data) == []


def test_an_open_data_dir_from_before_is_made_private(gateways: Any, short_dir: Path) -> None:
    data = short_dir / "g0" / "data"
    (data / "instances").mkdir(parents=True, mode=0o755)
    data.chmod(0o755)
    (data / "instances").chmod(0o755)
    old_cache = data / "session-cache.sqlite3"
    import sqlite3

    sqlite3.connect(old_cache).close()
    old_cache.chmod(0o644)
    gw: Gateway = gateways()
    assert gw.data == data
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "instances").stat().st_mode) == 0o700
    assert stat.S_IMODE(old_cache.stat().st_mode) == 0o600


def test_a_mounted_root_that_cannot_be_changed_is_a_warning_not_a_failure(short_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the data dir to a user the gateway is not")
    data = short_dir / "volume"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    os.chown(data, 65534, 65534)  # like a volume's root: someone else's, writable
    sock = short_dir / "s.sock"
    log = short_dir / "sidecar.log"
    cmd = [sys.executable, "-m", "sidecar", "--simulator", "--data-dir", str(data), "--socket", str(sock)]
    with log.open("wb") as out:
        proc = subprocess.Popen(foreign_owner(cmd), stdout=out, stderr=out)
    try:
        wait_for(lambda: proc.poll() is not None or "sidecar ready" in log.read_text(), 60, what="the sidecar")
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert f"cannot make {data} private" in text
        assert "Traceback" not in text
        assert stat.S_IMODE(data.stat().st_mode) == 0o777, "left as mounted"
        assert [p for p in _loose(data) if not p.startswith(f"{data.name} ")] == []
    finally:
        stop_process(proc)
