"""Where the Lingma binary lives when ``LINGMA_BIN`` is empty (docs/lingma-protocol.md §1.1)."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

__all__ = ("find_binary", "platform_dir")

_DESKTOP_APP = Path("/Applications/Lingma.app/Contents/Resources/app/resources/bin")


def find_binary(env_value: str, *, home: Path | None = None, platform_name: str | None = None) -> str | None:
    """``LINGMA_BIN`` when set (a bare name is looked up on ``PATH``), else the plugin or desktop install."""
    value = env_value.strip()
    if value:
        if os.sep in value or value.startswith("~"):
            return str(Path(value).expanduser())
        return shutil.which(value) or value
    plat = platform_name or platform_dir()
    if plat is None:
        return None
    exe = "Lingma.exe" if plat.endswith("windows") else "Lingma"
    bin_root = (home or Path.home()) / ".lingma" / "bin"
    candidates = [bin_root / version / plat / exe for version in _versions(bin_root)]
    candidates.append(_DESKTOP_APP / plat / exe)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def platform_dir() -> str | None:
    """Lingma's platform directory name for this machine, e.g. ``x86_64_linux``."""
    machine = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(
        platform.machine().lower()
    )
    system = {"linux": "linux", "darwin": "darwin", "windows": "windows"}.get(platform.system().lower())
    return f"{machine}_{system}" if machine and system else None


def _versions(bin_root: Path) -> list[str]:
    """The configured version first (``config.json`` ``cosy.core.version``), then newest first."""
    found = sorted((p.name for p in _subdirs(bin_root) if p.name[:1].isdigit()), key=_version_key, reverse=True)
    configured = _configured_version(bin_root / "config.json")
    if configured:
        found = [configured, *(v for v in found if v != configured)]
    return found


def _configured_version(config: Path) -> str | None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("cosy.core.version")
    if value is None:
        node: object = data
        for part in ("cosy", "core", "version"):
            node = node.get(part) if isinstance(node, dict) else None
        value = node
    return value if isinstance(value, str) and value.strip() else None


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return []


def _version_key(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
