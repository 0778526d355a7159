"""Checks that need no running gateway: the binary, the data dir, the socket file, the ports, the tokenizer,
the login browser."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from common.client import socket_accepts
from common.settings import Settings
from sidecar.doctor.report import Check
from sidecar.lingma.discover import find_binary

__all__ = (
    "check_binary",
    "check_browser",
    "check_data_dir",
    "check_ports",
    "check_socket",
    "check_tokenizer",
    "lingma_version",
)

RUN_TIMEOUT_S = 10.0
BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def binary_path(settings: Settings) -> str | None:
    return find_binary(settings.lingma_bin)


def lingma_version(binary: str) -> tuple[bool, str]:
    """Run ``Lingma version``: whether the binary runs at all, and what it printed (or why it did not run)."""
    try:
        done = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return True, "it started but did not answer `version` in time"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    if done.returncode in (126, 127):
        return False, (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    printed = (done.stdout.strip().splitlines() or [""])[0]
    return True, printed.removeprefix("version:").strip() or f"exit status {done.returncode}"


def check_binary(settings: Settings) -> Check:
    name = "lingma binary"
    path = binary_path(settings)
    where = "set LINGMA_BIN to the Lingma binary (or install the Lingma IDE plugin), or serve with --simulator"
    if path is None:
        return Check(name, "fail", "not found (LINGMA_BIN is unset and ~/.lingma/bin has none)", where)
    file = Path(path)
    if not file.is_file():
        return Check(name, "fail", f"{path} does not exist", where)
    if not os.access(file, os.X_OK):
        return Check(name, "fail", f"{path} is not executable", f"chmod +x {path}")
    runs, said = lingma_version(path)
    if not runs:
        return Check(name, "fail", f"{path} does not run: {said}", f"run `{path} version` by hand; {where}")
    return Check(name, "ok", f"{path} runs (version {said})")


def _writable(directory: Path) -> str | None:
    """Why a file cannot be created in ``directory``, or None when it can (tried for real, not guessed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".doctor-", dir=directory)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def check_data_dir(settings: Settings) -> Check:
    name = "data dir"
    path = settings.data_dir
    uid = os.geteuid()
    fix = f"chown -R {uid} {path} && chmod 700 {path}, or set GATEWAY_DATA_DIR (--data-dir) to a writable directory"
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), Path("/"))
        if not parent.is_dir() or _writable(parent):
            return Check(name, "fail", f"{path} is missing and cannot be created under {parent}", fix)
        return Check(name, "ok", f"{path} does not exist yet; it is created at start")
    if not path.is_dir():
        return Check(name, "fail", f"{path} is not a directory", fix)
    for directory in (path, settings.work_dir):
        if directory.is_dir() and (why := _writable(directory)):
            return Check(name, "fail", f"{directory} is not writable by uid {uid} ({why})", fix)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check(
            name,
            "warn",
            f"{path} is writable, but mode {mode:o} lets other users in, and it holds login sessions",
            f"chmod 700 {path}",
        )
    return Check(name, "ok", f"{path} is writable (mode {mode:o})")


def check_socket(settings: Settings) -> Check:
    name = "socket"
    path = settings.socket_path
    uid = os.geteuid()
    if not (path.exists() or path.is_symlink()):
        return Check(name, "ok", f"{path} is free; the sidecar creates it at start")
    info = path.lstat()
    if not stat.S_ISSOCK(info.st_mode):
        return Check(name, "fail", f"{path} exists and is not a socket: the sidecar will not replace it", f"rm {path}")
    owner = f"owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}"
    if info.st_uid != uid and uid != 0:
        return Check(
            name,
            "fail",
            f"{path} belongs to uid {info.st_uid}, not to you (uid {uid})",
            f"run the gateway and doctor as uid {info.st_uid}, or stop that sidecar and remove {path}",
        )
    loose = stat.S_IMODE(info.st_mode) & ~settings.gateway_socket_mode & 0o777
    if not socket_accepts(path):
        return Check(name, "warn", f"{path} is a stale socket ({owner}); the sidecar replaces it at start", "")
    if loose:
        return Check(
            name,
            "warn",
            f"a sidecar serves {path}, but its {owner} is looser than GATEWAY_SOCKET_MODE",
            "restart the sidecar",
        )
    return Check(name, "ok", f"a sidecar serves {path} ({owner})")


def _answers_as_gateway(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3) as response:
            return b'"status"' in response.read(200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_taken(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def check_ports(settings: Settings, *, sidecar_running: bool) -> Check:
    name = "ports"
    host = "127.0.0.1" if settings.gateway_host in ("0.0.0.0", "::", "") else settings.gateway_host
    port = settings.gateway_port
    note = ""
    if not sidecar_running:
        first = settings.lingma_socket_port
        busy = [p for p in (first, first + 500) if _port_taken("127.0.0.1", p)]
        if busy:
            note = f" (Lingma's first ports {', '.join(map(str, busy))} are taken; it uses the next free pair)"
    if not _port_taken(host, port):
        return Check(name, "ok", f"{host}:{port} is free for the gateway{note}")
    if _answers_as_gateway(host, port):
        return Check(name, "ok", f"{host}:{port} is served by a gateway{note}")
    return Check(
        name,
        "fail",
        f"{host}:{port} is taken by a program that is not this gateway",
        "stop that program, or set GATEWAY_PORT (--port) to a free port",
    )


def check_tokenizer() -> Check:
    from sidecar.tokens import tokenizer_name

    logging.getLogger("lingma_gateway.tokens").setLevel(logging.ERROR)
    if tokenizer_name() == "qwen":
        return Check("tokenizer", "ok", "the Qwen tokenizer (dashscope's qwen.tiktoken) loads")
    return Check(
        "tokenizer",
        "warn",
        "the Qwen tokenizer data is missing: token counts and count_tokens are estimates",
        "pip install 'lingma-gateway[sidecar]' (tiktoken and dashscope)",
    )


def check_browser(settings: Settings) -> Check:
    name = "login browser"
    if not settings.auto_login_enabled:
        return Check(name, "skip", "auto-login is off (AUTO_LOGIN_ENABLED=false)")
    for candidate in BROWSERS:
        found = candidate if os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found and os.path.isfile(found):
            return Check(name, "ok", f"{found} for auto-login")
    return Check(
        name,
        "warn",
        "no Chromium found for auto-login: logged-out instances must be signed in by hand",
        "apt-get install chromium (scripts/system-deps), or AUTO_LOGIN_ENABLED=false",
    )
