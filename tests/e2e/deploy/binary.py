"""The single executable for the tests: built by ``scripts/build-binary`` once per run (or reused from the
build cache when its inputs are unchanged), and a way to run it where no Python can be found."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lingma-gateway" / "binary"


def build_binary(out: Path) -> Path:
    """Build (or take from the cache) the executable into ``out``; the build takes minutes, a cache hit none."""
    env = {**os.environ, "BINARY_OUT": str(out), "BINARY_CACHE_DIR": str(CACHE)}
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-binary")], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"scripts/build-binary failed:\n{done.stderr[-4000:]}"
    return out


def python_paths() -> tuple[list[str], list[str]]:
    """Directories and files that hold a Python installation, the checkout or its virtualenv."""
    dirs = {str(ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix}
    dirs.update(glob.glob("/usr/lib/python3*") + glob.glob("/usr/local/lib/python3*"))
    for extra in (os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/work", "/opt"):
        if extra and Path(extra).is_dir():
            dirs.add(extra)
    files = glob.glob("/usr/bin/python*") + glob.glob("/usr/local/bin/python*") + glob.glob("/usr/lib/*/libpython3*")
    # A system Python's prefix is /usr (or /usr/local): hiding it would hide mount and the shell too, so there
    # only its own library dirs and binaries (the globs above) are hidden.
    dirs -= {"/", "/usr", "/usr/local"}
    present = sorted(d for d in dirs if Path(d).is_dir())
    outermost = [d for d in present if not any(d != o and Path(d).is_relative_to(o) for o in present)]
    real = {os.path.realpath(f) for f in files if Path(f).is_file()}
    return outermost, sorted(f for f in real if not any(Path(f).is_relative_to(o) for o in outermost))


def can_unshare() -> None:
    """A mount namespace needs root (or user namespaces) and util-linux's ``unshare``."""
    reason = None
    if shutil.which("unshare") is None:
        reason = "unshare is not installed"
    elif subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False).returncode != 0:
        reason = "unshare -m is not permitted here"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def hidden_python_command(workdir: Path, argv: list[str]) -> list[str]:
    """``argv`` run in a private mount namespace where the checkout and every Python installation are hidden.

    The script refuses to run ``argv`` if a Python interpreter or the checkout can still be seen."""
    dirs, files = python_paths()
    lines = ["set -eu"]
    lines += [f"mount --bind /dev/null '{f}'" for f in files]
    lines += [f"mount -t tmpfs -o size=1m,mode=0755 none '{d}'" for d in dirs]
    lines += [
        "for py in python3 python python3.11 python3.12 python3.13; do",
        '  if command -v $py >/dev/null 2>&1 && $py -c pass >/dev/null 2>&1; then echo "$py still runs" >&2; exit 97; fi',
        "done",
        f"if [ -n \"$(ls -A '{ROOT}')\" ]; then echo 'the checkout is visible' >&2; exit 98; fi",
        f"cd '{workdir}'",
        'exec "$@"',
    ]
    env_path = "/usr/sbin:/usr/bin:/sbin:/bin"
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "env",
        "-i",
        f"PATH={env_path}",
        f"HOME={workdir}",
        "bash",
        "-c",
        "\n".join(lines),
        "hidden-python",
        *argv,
    ]
