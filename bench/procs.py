"""Child processes the benchmark starts, and a stop that leaves none of them (or their children) behind.

Children get their own session, so a Ctrl-C in the terminal reaches only the benchmark, which then
stops them in order: SIGTERM, a grace period, SIGKILL; then any descendant seen earlier that is
still the same process is killed too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import descendants, start_time

__all__ = ("Child", "Processes", "StartupError", "wait_until")


class StartupError(Exception):
    """A child exited or did not become ready in time."""


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Processes:
    """Everything started so far, stopped in reverse order by ``stop_all``."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)
    _seen: dict[int, str | None] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def remember_descendants(self) -> None:
        """Note grandchildren (the sidecar's simulator, say) so a stuck one can still be killed at the end."""
        for child in self.children:
            for pid in descendants(child.pid):
                self._seen.setdefault(pid, start_time(pid))

    def stop_all(self, grace_s: float = 20.0) -> None:
        self.remember_descendants()
        for child in reversed(self.children):
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait()
        for pid, stamp in self._seen.items():
            if stamp is not None and start_time(pid) == stamp:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.children.clear()


def wait_until(ready: Callable[[], bool], child: Child, timeout_s: float, what: str) -> None:
    """Poll ``ready`` until true; fail at once if ``child`` exits, or at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise StartupError(f"{what}: {child.name} exited with {child.popen.returncode}\n{child.log_tail()}")
        if ready():
            return
        time.sleep(0.05)
    raise StartupError(f"{what}: not ready within {timeout_s:.0f}s\n{child.log_tail()}")
