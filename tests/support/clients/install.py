"""Pinned installs of npm-shipped client CLIs, cached per version and shared between test processes.

Each client goes into ``~/.cache/lingma-gateway/clients/<name>-<version>/`` (``LINGMA_GATEWAY_CLIENTS_DIR``
overrides the base) behind an ``fcntl`` lock, so parallel tests install it once. The pins are the
versions whose requests are captured under ``tests/fixtures/captures/``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ("CLAUDE_CODE", "CODEX", "ClientUnavailableError", "NpmClient", "clients_dir", "install")

INSTALL_TIMEOUT_S = 900.0
VERSION_TIMEOUT_S = 60.0


class ClientUnavailableError(RuntimeError):
    """npm is missing here, so the client cannot be installed; tests turn this into a skip.

    A failing install with npm present is a test failure, not a skip: it must not hide the client tests.
    """


@dataclass(frozen=True)
class NpmClient:
    package: str
    version: str
    binary: str
    """The name under ``node_modules/.bin``."""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.package.lstrip("@")) + "-" + self.version


CODEX = NpmClient("@openai/codex", "0.171.0", "codex")
CLAUDE_CODE = NpmClient("@anthropic-ai/claude-code", "2.1.332", "claude")


def clients_dir() -> Path:
    override = os.environ.get("LINGMA_GATEWAY_CLIENTS_DIR")
    return Path(override) if override else Path.home() / ".cache" / "lingma-gateway" / "clients"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _reports_version(binary: Path, version: str) -> bool:
    if not binary.exists():
        return False
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and version in done.stdout


def install(client: NpmClient) -> Path:
    """Install ``client`` once (or reuse the cached install) and return its binary, checked with ``--version``."""
    root = clients_dir() / client.slug
    binary = root / "node_modules" / ".bin" / client.binary
    with _locked(root.with_name(root.name + ".lock")):
        if _reports_version(binary, client.version):
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise ClientUnavailableError("npm is not installed")
        if root.exists():
            shutil.rmtree(root)  # a half-finished or different install: start clean
        root.mkdir(parents=True)
        (root / "package.json").write_text('{"name": "lingma-gateway-test-client", "private": true}\n')
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--save-exact", f"{client.package}@{client.version}"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"npm install {client.package}@{client.version} timed out") from None
        if done.returncode != 0:
            raise RuntimeError(
                f"npm install {client.package}@{client.version} failed ({done.returncode}):\n{done.stderr[-2000:]}"
            )
        if not _reports_version(binary, client.version):
            raise RuntimeError(f"{binary} does not report version {client.version} after a fresh install")
        return binary
