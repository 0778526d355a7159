"""CPU time of processes from ``/proc/<pid>/stat``, to say where the machine's time went during a run."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = (
    "CpuProbe",
    "cmdline",
    "cpu_seconds",
    "descendants",
    "machine_busy_seconds",
    "rss_kib",
    "start_time",
    "task_cpu_ns",
)

_TICK = os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str] | None:
    """Fields after the command name (which may hold spaces), so index 0 is the state (field 3)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds."""
    fields = _fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def task_cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU, summed over the live threads (``schedstat``: finer than the 10 ms ticks of ``stat``)."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident set size (``VmRSS``) or its peak (``VmHWM``) from ``/proc/<pid>/status``, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def machine_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine (all cores), from the first line of /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / _TICK


def start_time(pid: int) -> str | None:
    """An opaque stamp that tells a live process from a later one given the same pid."""
    fields = _fields(pid)
    return None if fields is None else fields[19]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, by scanning the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class CpuProbe:
    """CPU seconds used by named processes between ``start`` and ``stop``.

    ``other`` is what the rest of the machine used meanwhile: on a shared box, the noise to judge by.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._started: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) or 0.0 for name, pid in self._pids.items()}
        now["machine"] = machine_busy_seconds()
        return now

    def start(self) -> None:
        self._started = self._now()

    def stop(self) -> dict[str, float]:
        now = self._now()
        used = {name: round(now[name] - self._started.get(name, 0.0), 3) for name in now}
        machine = used.pop("machine")
        used["other"] = round(max(0.0, machine - sum(used.values())), 3)
        return used
