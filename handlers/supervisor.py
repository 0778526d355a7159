"""``serve``'s sidecar child: started, checked to be its own, reaped and restarted whenever it dies.

A thread waits on the child, so a dead sidecar never stays a zombie, and starts it again with a capped
backoff, logging why. Meanwhile requests get 503 in their dialect (the client finds no socket). If the
sidecar fails to come back several times in a row, or stays away too long, ``/healthz`` fails, so that an
orchestrator restarts the whole process. The handshake names the sidecar's pid and data dir: ``serve``
accepts only its own child serving its own data dir on its socket, never another gateway's sidecar.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common.client import sidecar_identity
from common.parent_death import die_with_parent
from common.settings import Settings

__all__ = ("SidecarSupervisor", "sidecar_command")

log = logging.getLogger("lingma_gateway")

START_TIMEOUT = 60.0
START_POLL = 0.01
"""Seconds between handshake attempts while the sidecar starts (a refused connect costs microseconds)."""
RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Seconds before each restart attempt in a row; the last value is the cap."""
STABLE_UPTIME = 30.0
"""A sidecar that ran this long before dying starts the backoff from the beginning."""
UNHEALTHY_AFTER_FAILURES = 3
UNHEALTHY_AFTER_SEC = 60.0
STOP_GRACE = 30.0
_SECRETS = ("API_KEYS", "ADMIN_TOKEN", "METRICS_TOKEN")


class _StartFailed(Exception):
    pass


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def sidecar_command(settings: Settings, *, simulator: bool) -> list[str]:
    """The child's command line: the paths ``serve`` resolved, as flags, so both sides agree on them.

    Only paths and switches go here (a command line is visible to every user of the host); everything
    else, credentials included, reaches the child through the environment it inherits.
    """
    cmd = [sys.executable, "-m", "sidecar", "--data-dir", str(settings.data_dir.resolve())]
    cmd += ["--socket", str(settings.socket_path)]
    if simulator:
        cmd.append("--simulator")
    if settings.lingma_sim_scenario:
        cmd += ["--scenario", settings.lingma_sim_scenario]
    return cmd


class SidecarSupervisor:
    """Runs ``python -m sidecar`` as a child for as long as ``serve`` runs."""

    def __init__(self, settings: Settings, *, simulator: bool) -> None:
        self.socket = settings.socket_path
        self.data_dir = str(settings.data_dir.resolve())
        self._cmd = sidecar_command(settings, simulator=simulator)
        # The sidecar checks no API keys: keep the client credentials out of its environment (and its children's).
        self._env = {k: v for k, v in os.environ.items() if k not in _SECRETS}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._failures = 0
        """Failed start attempts in a row."""
        self._streak = 0
        """Deaths in a row, each after less than ``STABLE_UPTIME`` up."""
        self._down_since: float | None = None
        self._broken: str | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """The first start; ``SystemExit`` with a clear message when the sidecar cannot run at all."""
        self.spawn()
        self.wait_started()

    def spawn(self) -> None:
        """Start the sidecar without waiting for it, so the caller can load the HTTP stack meanwhile."""
        other = sidecar_identity(self.socket)
        if other is not None:
            raise SystemExit(
                f"lingma-gateway: the socket {self.socket} is already served by another gateway's sidecar "
                f"(pid {other.pid or '?'}, data dir {other.data_dir or '?'}); give this gateway its own --socket "
                "(GATEWAY_SOCKET) and --data-dir, or stop the other gateway"
            )
        self._spawn_child()

    def wait_started(self) -> None:
        """Wait until the spawned sidecar answers as this gateway's own, then watch it; ``SystemExit`` if it fails."""
        child = self._child
        assert child is not None, "spawn() first"
        try:
            self._await_child(child)
        except _StartFailed as exc:
            raise SystemExit(f"lingma-gateway: the sidecar could not start: {exc}") from None
        self._thread = threading.Thread(target=self._watch, name="sidecar supervisor", daemon=True)
        self._thread.start()

    def liveness(self) -> str | None:
        """None while the sidecar is up or coming back; otherwise why this process should be restarted."""
        if self._broken is not None:
            return self._broken
        down = self._down_since
        if self._failures >= UNHEALTHY_AFTER_FAILURES:
            return f"the sidecar failed to restart {self._failures} times in a row"
        if down is not None and time.monotonic() - down > UNHEALTHY_AFTER_SEC:
            return f"the sidecar has been down for more than {UNHEALTHY_AFTER_SEC:g}s"
        return None

    def stop(self) -> None:
        """Stop the sidecar (it drains its turns) and the watcher; no child is left behind."""
        self._stopping.set()
        with self._lock:
            child = self._child
        if child is not None:
            _terminate(child, STOP_GRACE)
        if self._thread is not None:
            self._thread.join(5.0)

    # -- the watcher thread -------------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            while not self._stopping.is_set():
                child = self._child
                assert child is not None
                started = time.monotonic()
                status = child.wait()  # reaps it
                if self._stopping.is_set():
                    return
                uptime = time.monotonic() - started
                self._down_since = time.monotonic()
                self._streak = 0 if uptime >= STABLE_UPTIME else self._streak + 1
                why = describe_exit(status)
                log.error("the sidecar (pid %d) %s after %.1fs up; restarting it", child.pid, why, uptime)
                self._restart(max(self._streak - 1, 0))
        except Exception as exc:
            log.exception("the sidecar supervisor failed")
            self._broken = f"the sidecar supervisor failed: {type(exc).__name__}"

    def _restart(self, attempt: int) -> None:
        """Start the sidecar again until it works or the gateway stops, waiting longer after each failure."""
        while not self._stopping.is_set():
            delay = RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)]
            if delay and self._stopping.wait(delay):
                return
            self.restarts += 1
            try:
                self._start_child()
            except _StartFailed as exc:
                if self._stopping.is_set():
                    return
                self._failures += 1
                attempt += 1
                wait = RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)]
                log.error("restarting the sidecar failed (%s); trying again in %gs", exc, wait)
                continue
            down = time.monotonic() - (self._down_since or time.monotonic())
            self._failures, self._down_since = 0, None
            log.warning("the sidecar is back (pid %d) after %.1fs", self.pid or 0, down)
            return

    def _start_child(self) -> None:
        """Spawn the sidecar and wait until its own handshake answers on the socket; ``_StartFailed`` if not."""
        self._await_child(self._spawn_child())

    def _spawn_child(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._stopping.is_set():
                raise _StartFailed("the gateway is stopping")
            # Its own process group (a ^C at the terminal reaches ``serve`` only, which then stops it in order).
            child = subprocess.Popen(
                self._cmd, preexec_fn=die_with_parent(signal.SIGTERM), process_group=0, env=self._env
            )
            self._child = child
        return child

    def _await_child(self, child: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._stopping.is_set():
                raise _StartFailed("the gateway is stopping")
            status = child.poll()
            if status is not None:
                raise _StartFailed(f"it {describe_exit(status)} during start-up; its error is logged above")
            ident = sidecar_identity(self.socket, timeout=1.0)
            if ident is not None and ident.pid == child.pid:
                if ident.data_dir and ident.data_dir != self.data_dir:
                    _terminate(child, 5.0)
                    raise _StartFailed(f"it serves the data dir {ident.data_dir}, not {self.data_dir}")
                return
            if ident is not None:
                _terminate(child, 5.0)
                raise _StartFailed(
                    f"the socket {self.socket} is served by another sidecar (pid {ident.pid or '?'}, "
                    f"data dir {ident.data_dir or '?'})"
                )
            if time.monotonic() > deadline:
                _terminate(child, 5.0)
                raise _StartFailed(f"it did not open its socket {Path(self.socket)} within {START_TIMEOUT:g}s")
            time.sleep(START_POLL)


def _terminate(child: subprocess.Popen[bytes], grace: float) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
