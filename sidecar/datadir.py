"""The data dir: private (the dir 0700, its files 0600, whatever the umask) and served by one sidecar at a time.

The session cache holds whole conversations and the instance work dirs hold Lingma's login state, so nothing
in the data dir is readable by other users. A lock file (``gateway.lock``, held with ``flock`` for the life
of the sidecar and released by the kernel however it ends) keeps a second gateway from sharing the data dir,
whose Lingma processes and SQLite file it would otherwise fight over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

__all__ = ("LOCK_NAME", "DataDirInUseError", "DataDirLock", "StartupError", "make_private", "tighten")

log = logging.getLogger("lingma_gateway.sidecar")

LOCK_NAME = "gateway.lock"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class StartupError(RuntimeError):
    """A problem the operator must fix before the sidecar can start; logged as one line, never a traceback."""


class DataDirInUseError(StartupError):
    """Another live gateway holds the data dir's lock."""


def tighten(path: Path, mode: int) -> None:
    """Give ``path`` exactly ``mode``; where that is impossible (a mounted volume's root), warn and go on."""
    try:
        current = path.stat()
        if stat.S_IMODE(current.st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning(
            "cannot make %s private (mode %o wanted): %s; make sure only this gateway's user can read it",
            path,
            mode,
            exc.strerror or exc,
        )


def make_private(data_dir: Path, work_dir: Path) -> None:
    """Create the data dir 0700 (and tighten one an older version left open), with the instances' base dir."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    except OSError as exc:
        raise StartupError(f"cannot create the data dir {data_dir}: {exc.strerror or exc}") from None
    tighten(data_dir, PRIVATE_DIR)
    tighten(work_dir, PRIVATE_DIR)


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/gateway.lock``; the file names the holder's pid for the error."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        except OSError as exc:
            raise StartupError(
                f"cannot write to the data dir {self.data_dir} ({exc.strerror or exc}); is it read-only? "
                "give the gateway a writable --data-dir (GATEWAY_DATA_DIR)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StartupError(f"cannot lock the data dir {self.data_dir}: {exc.strerror or exc}") from None
            who = f"pid {holder}" if holder else "another process"
            raise DataDirInUseError(
                f"the data dir {self.data_dir} is in use by another gateway ({who} holds {LOCK_NAME}); "
                "give each gateway its own --data-dir (GATEWAY_DATA_DIR), or stop the other one"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        tighten(self.path, PRIVATE_FILE)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
