"""The pidfile in a work dir: how a restarted sidecar ends the Lingma that a killed sidecar left behind.

It records the pid *and* the process start time, so a pid the kernel has since handed to another
process is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

__all__ = (
    "PIDFILE_NAME",
    "end_stale_process",
    "is_running",
    "process_start_time",
    "read_pidfile",
    "remove_pidfile",
    "write_pidfile",
)

log = logging.getLogger(__name__)

PIDFILE_NAME = "lingma.pid"
_PROC = Path("/proc")


def process_start_time(pid: int) -> str | None:
    """An opaque start stamp for a live process (``/proc/<pid>/stat`` field 22, or ``ps`` elsewhere)."""
    stat = _proc_stat(pid)
    if stat is not None:
        return None if stat[0] == "Z" else stat[1]
    if _PROC.is_dir():
        return None
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=2, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def is_running(pid: int, start_time: str | None) -> bool:
    """True only for a live (not zombie) process that started when the recorded one did."""
    return start_time is not None and process_start_time(pid) == start_time


def write_pidfile(work_dir: Path, pid: int) -> None:
    path = work_dir / PIDFILE_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "start_time": process_start_time(pid)}) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_pidfile(work_dir: Path) -> tuple[int, str | None] | None:
    try:
        data = json.loads((work_dir / PIDFILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    start = data.get("start_time")
    return pid, start if isinstance(start, str) else None


def remove_pidfile(work_dir: Path, pid: int) -> None:
    """Remove the pidfile if it still names ``pid`` (a newer Lingma may own it by now)."""
    recorded = read_pidfile(work_dir)
    if recorded is not None and recorded[0] == pid:
        with contextlib.suppress(OSError):
            (work_dir / PIDFILE_NAME).unlink()


async def end_stale_process(work_dir: Path, *, grace: float = 3.0) -> int | None:
    """End the process a pidfile names if it is still the same process: SIGINT, wait, SIGKILL.

    Returns the pid that was ended, if any; the pidfile is removed either way.
    """
    recorded = read_pidfile(work_dir)
    if recorded is None:
        return None
    pid, start_time = recorded
    ended: int | None = None
    if pid != os.getpid() and is_running(pid, start_time):
        log.warning("ending Lingma pid %d left behind in %s", pid, work_dir)
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if await _wait_gone(pid, start_time, wait):
                break
        ended = pid
    with contextlib.suppress(OSError):
        (work_dir / PIDFILE_NAME).unlink()
    return ended


async def _wait_gone(pid: int, start_time: str | None, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while is_running(pid, start_time):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, starttime) from ``/proc/<pid>/stat``; the command name may hold spaces and parentheses."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None
