"""The installed distribution's version, read once from its metadata (one number for CLI, /healthz, /metrics)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ("PYTHON_VERSION", "VERSION")


def _version() -> str:
    try:
        return version("lingma-gateway")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


VERSION = _version()
PYTHON_VERSION = platform.python_version()
