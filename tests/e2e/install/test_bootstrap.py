"""``scripts/serve`` from a fresh copy of the checkout with an empty ``HOME``: progress at once, an answering
gateway, and a second start that installs nothing and prints no warning box.

uv's cache (and the pinned uv itself) live under ``XDG_CACHE_HOME``, kept in ``/tmp`` between runs so that the
suite does not download every wheel each time; the first run on a machine measures the cold case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path("/tmp/lingma-gateway-test-cache")
PROGRESS_WITHIN_S = 5.0
WARNING_MARKS = ("BuildBackendWarning", "!!\n", "*****", "Warning:")


def _copy_checkout(dest: Path) -> None:
    """The tracked files as they are in the working tree: what a fresh clone of this state holds."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _env(home: Path) -> dict[str, str]:
    python_dir = str(Path(sys.base_prefix) / "bin")
    keep = [p for p in os.environ.get("PATH", "").split(":") if p and ".venv" not in p and "/.pyenv/shims" not in p]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTHON", "PIP_", "XDG_"))}
    env.pop("API_KEYS", None)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(CACHE),
        PATH=":".join([python_dir, *keep]),
        PYTHON=str(Path(python_dir) / "python3"),
    )
    return env


class Run:
    """One ``scripts/serve``: its output lines with their times since start, and when /readyz said 200."""

    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        cmd = ["scripts/serve", "--port", str(self.port), "--data-dir", str(clone.parent / "data"),
               "--socket", str(clone.parent / "s.sock")]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, raw.decode(errors="replace")))

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_ready(self, timeout: float) -> float:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"scripts/serve exited with {self.proc.returncode}:\n{self.output[-5000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"scripts/serve did not answer within {timeout}s:\n{self.output[-5000:]}")

    def answer(self) -> str:
        body = {"model": "auto", "messages": [{"role": "user", "content": "fresh clone"}]}
        r = httpx.post(f"http://127.0.0.1:{self.port}/v1/chat/completions", json=body, timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["choices"][0]["message"]["content"])

    def stop(self) -> None:
        stop_process(self.proc)
        self.reader.join(10)


def _venv_files(venv: Path) -> dict[str, tuple[int, int]]:
    """Every file and link in the venv with its size and mtime; bytecode caches that imports write are left out."""
    out: dict[str, tuple[int, int]] = {}
    for path in venv.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        st = path.lstat()
        out[str(path.relative_to(venv))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="lgw-clone-", dir="/tmp"))
    (tmp / "repo").mkdir()
    (tmp / "home").mkdir()
    _copy_checkout(tmp / "repo")
    yield tmp / "repo"
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(1200)
def test_first_and_second_start(clone: Path, record_property: object) -> None:
    env = _env(clone.parent / "home")
    first = Run(clone, env)
    try:
        ready_first = first.wait_ready(900)
        assert "sim: turn" in first.answer()
    finally:
        first.stop()
    assert first.lines, "scripts/serve printed nothing"
    assert first.lines[0][0] < PROGRESS_WITHIN_S, f"first output after {first.lines[0][0]:.1f}s"
    assert "installing" in first.output
    for mark in WARNING_MARKS:
        assert mark not in first.output, f"{mark!r} in the first start's output:\n{first.output[-4000:]}"
    before = _venv_files(clone / ".venv")
    assert any("site-packages/litestar" in name for name in before)

    second = Run(clone, env)
    try:
        ready_second = second.wait_ready(60)
        assert "sim: turn" in second.answer()
    finally:
        second.stop()
    for mark in ("installing", "Resolved", "Prepared", "Installed", "Uninstalled"):
        assert mark not in second.output, f"{mark!r}: the second start installed something:\n{second.output[-4000:]}"
    for mark in WARNING_MARKS:
        assert mark not in second.output, f"{mark!r} in the second start's output:\n{second.output[-4000:]}"
    after = _venv_files(clone / ".venv")
    assert after == before, {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if callable(record_property):
        record_property("first_ready_s", round(ready_first, 1))
        record_property("second_ready_s", round(ready_second, 1))
    print(f"\nscripts/serve: first output {first.lines[0][0]:.2f}s, first answer {ready_first:.1f}s; "
          f"second answer {ready_second:.1f}s")  # fmt: skip


def test_a_stale_lock_stops_the_install_with_the_fix(clone: Path) -> None:
    stale = clone.parent / "stale"
    shutil.copytree(clone, stale, ignore=shutil.ignore_patterns(".venv"))
    pyproject = stale / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"msgspec>=0.19",', '"msgspec>=0.19",\n    "six>=1.16",', 1))
    done = subprocess.run(
        ["scripts/bootstrap"], cwd=stale, env=_env(clone.parent / "home"), capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    assert "uv.lock does not match pyproject.toml" in done.stderr and "scripts/uv lock" in done.stderr
    assert not (stale / ".venv" / ".lingma-gateway-lock").exists()
