"""The pidfile ends a process left behind, and never one whose pid was recycled."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.lingma.pidfile import (
    PIDFILE_NAME,
    end_stale_process,
    is_running,
    process_start_time,
    read_pidfile,
    remove_pidfile,
    write_pidfile,
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


async def test_a_live_process_named_by_the_pidfile_is_ended(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    write_pidfile(tmp_path, sleeper.pid)
    assert read_pidfile(tmp_path) == (sleeper.pid, process_start_time(sleeper.pid))
    assert await end_stale_process(tmp_path, grace=2.0) == sleeper.pid
    assert sleeper.wait(5) is not None
    assert not (tmp_path / PIDFILE_NAME).exists()


async def test_a_recycled_pid_is_left_alone(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    (tmp_path / PIDFILE_NAME).write_text(f'{{"pid": {sleeper.pid}, "start_time": "1"}}')
    assert not is_running(sleeper.pid, "1")
    assert await end_stale_process(tmp_path) is None
    assert sleeper.poll() is None
    assert not (tmp_path / PIDFILE_NAME).exists()


async def test_missing_or_broken_pidfiles(tmp_path: Path) -> None:
    assert await end_stale_process(tmp_path) is None
    (tmp_path / PIDFILE_NAME).write_text("garbage")
    assert read_pidfile(tmp_path) is None
    assert await end_stale_process(tmp_path) is None


def test_remove_only_our_own(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    write_pidfile(tmp_path, sleeper.pid)
    remove_pidfile(tmp_path, sleeper.pid + 1)
    assert (tmp_path / PIDFILE_NAME).exists()
    remove_pidfile(tmp_path, sleeper.pid)
    assert not (tmp_path / PIDFILE_NAME).exists()
