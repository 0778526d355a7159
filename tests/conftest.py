"""Shared fixtures: short socket paths, free ports, and real sidecar subprocesses polled until ready.

Every test lives under one layer directory (``unit``, ``integration``, ``e2e``, ``faults``) and gets that layer's marker
here, so a layer runs alone by path (``pytest tests/unit``) or by marker (``pytest -m unit``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from common.client import socket_accepts

# A property runs 50 examples locally (the unit layer stays fast), 100 in CI (derandomized, so a failure repeats),
# and 1000 with HYPOTHESIS_PROFILE=thorough.
settings.register_profile(
    "ci", deadline=None, max_examples=100, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile("thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


LAYERS = ("unit", "integration", "e2e", "faults")
TESTS_DIR = Path(__file__).resolve().parent


def layer_of(path: Path) -> str | None:
    """The layer directory a test file sits in, or None when it sits in none."""
    parts = path.resolve().relative_to(TESTS_DIR).parts
    return parts[0] if len(parts) > 1 and parts[0] in LAYERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = layer_of(item.path)
        if layer is not None:
            item.add_marker(layer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: object, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until it is truthy or the deadline passes."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Terminate ``proc`` if it still runs and reap it, killing it after ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory under /tmp: Unix socket paths must stay under 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="lgw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class SidecarProcess:
    def __init__(self, data_dir: Path, socket_path: Path, args: list[str], env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.socket = socket_path
        self.log = data_dir / "sidecar.log"
        self._args = args
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> SidecarProcess:
        env = {**os.environ, **self._env}
        cmd = [sys.executable, "-m", "sidecar", "--data-dir", str(self.data_dir), "--socket", str(self.socket)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd + self._args, env=env, stdout=log, stderr=log)
        if wait:
            wait_for(self.ready, 30, what="the sidecar socket")
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecar exited with {self.proc.returncode}:\n{self.log.read_text()}")
        return socket_accepts(self.socket)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return stop_process(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def sidecar_factory(short_dir: Path) -> Iterator[object]:
    started: list[SidecarProcess] = []

    def make(args: list[str], env: dict[str, str] | None = None, wait: bool = True) -> SidecarProcess:
        proc = SidecarProcess(short_dir / "data", short_dir / "s.sock", args, env or {})
        proc.data_dir.mkdir(exist_ok=True)
        started.append(proc)
        return proc.start(wait=wait)

    yield make
    for proc in started:
        proc.stop()


def captures_dir() -> Path:
    """Requests that real clients sent, kept byte for byte under ``tests/fixtures/captures``."""
    return TESTS_DIR / "fixtures" / "captures"
