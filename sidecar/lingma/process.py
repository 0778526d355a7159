"""Spawning and stopping one Lingma process, and dialing its WebSocket until it answers.

Launch line (docs/lingma-protocol.md §1.2): ``<bin> start --transportType=websocket --workDir=<dir>
--socketPort=<p1> --httpPort=<p2>``, cwd = the work dir. There is no readiness signal clients rely
on, so the dial is retried until it succeeds, the process exits, or the start-up timeout passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping
from pathlib import Path

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from common.errors import UpstreamUnavailableError
from common.parent_death import die_with_parent
from sidecar.lingma.pidfile import remove_pidfile, write_pidfile
from sidecar.lingma.rpc import dial

__all__ = ("HTTP_PORT_OFFSET", "LingmaProcess", "launch")

log = logging.getLogger(__name__)

HTTP_PORT_OFFSET = 500
"""``--httpPort`` = ``--socketPort`` + 500, as in Lingma's own defaults (37010 / 37510)."""

_DIAL_INTERVAL = 0.15
_PORT_SCAN = 50

_claimed: set[int] = set()
"""Socket ports of the Lingma processes this sidecar runs or is starting: two instances starting at
once must never pick the same free pair (one would dial the other's Lingma)."""


class _StartupFailed(Exception):
    def __init__(self, message: str, *, port_busy: bool) -> None:
        super().__init__(message)
        self.port_busy = port_busy


class LingmaProcess:
    """A running Lingma child: its pid, ports and work dir, and a stop that never leaves it behind."""

    def __init__(self, proc: asyncio.subprocess.Process, *, work_dir: Path, socket_port: int, http_port: int) -> None:
        self._proc = proc
        self.work_dir = work_dir
        self.socket_port = socket_port
        self.http_port = http_port

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    def kill(self) -> None:
        """SIGKILL at once: a hung (or stopped) process would never act on SIGINT."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def stop(self, *, grace: float = 3.0) -> int:
        """SIGINT, wait up to ``grace`` seconds, then SIGKILL; the pidfile goes too."""
        try:
            if self._proc.returncode is None:
                for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.send_signal(sig)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._proc.wait()), wait)
                        break
            return await self._proc.wait()
        finally:
            remove_pidfile(self.work_dir, self._proc.pid)
            _claimed.discard(self.socket_port)


async def launch(
    *,
    binary: str,
    work_dir: Path,
    first_port: int,
    startup_timeout: float,
    env: Mapping[str, str] | None = None,
    tries: int = 5,
) -> tuple[LingmaProcess, ClientConnection]:
    """Start Lingma on the first free port pair from ``first_port`` and return it with an open socket.

    A process that exits during start-up (a port taken between our check and its bind, say), or whose
    dial times out while its port is held by another program, is retried on the next pair, up to
    ``tries`` spawns; each spawn gets ``startup_timeout`` to open its socket.
    """
    loop = asyncio.get_running_loop()
    (work_dir / "logs").mkdir(parents=True, exist_ok=True)
    port = first_port
    last_error = f"no free port pair from {first_port}"
    for _ in range(tries):
        found = _next_free_pair(port)
        if found is None:
            break
        port = found
        _claimed.add(port)
        try:
            proc = await _spawn(binary, work_dir, port, env)
        except BaseException:
            _claimed.discard(port)
            raise
        try:
            return proc, await _dial_until_ready(proc, loop.time() + startup_timeout)
        except _StartupFailed as exc:
            last_error = str(exc)
            log.warning("Lingma start-up failed in %s: %s", work_dir, exc)
            await proc.stop(grace=1.0)
            if not exc.port_busy:
                break
        except BaseException:
            await proc.stop(grace=1.0)
            raise
        port += 1
    raise UpstreamUnavailableError(f"Lingma did not start in {work_dir}: {last_error}")


SECRET_VARIABLES = frozenset({"API_KEYS", "ADMIN_TOKEN", "METRICS_TOKEN", "LINGMA_ACCOUNTS", "LINGMA_SESSION_BUNDLE"})
"""The gateway's own credentials: a third-party binary never needs them in its environment."""


def child_environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update(extra or {})
    return env


async def _spawn(binary: str, work_dir: Path, port: int, env: Mapping[str, str] | None) -> LingmaProcess:
    http_port = port + HTTP_PORT_OFFSET
    args = [
        "start",
        "--transportType=websocket",
        f"--workDir={work_dir}",
        f"--socketPort={port}",
        f"--httpPort={http_port}",
    ]
    with (work_dir / "logs" / "stdout.log").open("ab") as out:
        try:
            proc = await asyncio.create_subprocess_exec(
                binary,
                *args,
                cwd=work_dir,
                env=child_environment(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        except OSError as exc:
            raise UpstreamUnavailableError(f"cannot run the Lingma binary {binary!r}: {exc}") from exc
    write_pidfile(work_dir, proc.pid)
    log.info("started Lingma pid %d on ports %d/%d in %s", proc.pid, port, http_port, work_dir)
    return LingmaProcess(proc, work_dir=work_dir, socket_port=port, http_port=http_port)


async def _dial_until_ready(proc: LingmaProcess, deadline: float) -> ClientConnection:
    """Dial every ~150 ms until the socket opens; give up when the process exits or time runs out."""
    loop = asyncio.get_running_loop()
    while True:
        if proc.returncode is not None:
            raise _StartupFailed(
                f"Lingma exited with code {proc.returncode} during start-up: {_log_tail(proc.work_dir)}",
                port_busy=True,
            )
        remaining = deadline - loop.time()
        if remaining <= 0:
            busy = not _port_free(proc.socket_port)
            what = "the port is taken by another program" if busy else "its socket never opened"
            raise _StartupFailed(f"Lingma did not answer on port {proc.socket_port}: {what}", port_busy=busy)
        try:
            return await dial(proc.socket_port, open_timeout=min(remaining, 2.0))
        except (OSError, TimeoutError, WebSocketException):
            pass
        await asyncio.sleep(min(_DIAL_INTERVAL, max(deadline - loop.time(), 0)))


def _next_free_pair(port: int) -> int | None:
    """The first socket port from ``port`` on whose pair (port, port + 500) is free right now."""
    for candidate in range(port, min(port + _PORT_SCAN, 65536 - HTTP_PORT_OFFSET)):
        taken = (
            candidate in _claimed
            or candidate + HTTP_PORT_OFFSET in _claimed
            or candidate - HTTP_PORT_OFFSET in _claimed
        )
        if not taken and _port_free(candidate) and _port_free(candidate + HTTP_PORT_OFFSET):
            return candidate
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_tail(work_dir: Path, size: int = 400) -> str:
    try:
        with (work_dir / "logs" / "stdout.log").open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - size, 0))
            tail = f.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return "(no log)"
    return " | ".join(line for line in tail.splitlines()[-5:] if line.strip()) or "(empty log)"
