"""find_binary: LINGMA_BIN first, then the plugin install under ~/.lingma/bin."""

from __future__ import annotations

import json
from pathlib import Path

from sidecar.lingma.discover import find_binary, platform_dir


def _install(home: Path, version: str, plat: str = "x86_64_linux") -> Path:
    exe = home / ".lingma" / "bin" / version / plat / "Lingma"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return exe


def test_env_value_wins(tmp_path: Path) -> None:
    assert find_binary("/opt/lingma/Lingma", home=tmp_path) == "/opt/lingma/Lingma"
    assert find_binary("  sh ", home=tmp_path) in ("/bin/sh", "/usr/bin/sh")


def test_configured_version_first(tmp_path: Path) -> None:
    _install(tmp_path, "2.11.1")
    newest = _install(tmp_path, "2.12.0")
    assert find_binary("", home=tmp_path, platform_name="x86_64_linux") == str(newest)
    configured = tmp_path / ".lingma" / "bin" / "config.json"
    configured.write_text(json.dumps({"cosy.core.version": "2.11.1"}))
    assert find_binary("", home=tmp_path, platform_name="x86_64_linux") == str(
        tmp_path / ".lingma/bin/2.11.1/x86_64_linux/Lingma"
    )
    configured.write_text(json.dumps({"cosy": {"core": {"version": "2.12.0"}}}))
    assert find_binary("", home=tmp_path, platform_name="x86_64_linux") == str(newest)


def test_version_order_is_numeric(tmp_path: Path) -> None:
    _install(tmp_path, "2.9.0")
    ten = _install(tmp_path, "2.10.0")
    assert find_binary("", home=tmp_path, platform_name="x86_64_linux") == str(ten)


def test_nothing_installed(tmp_path: Path) -> None:
    _install(tmp_path, "2.11.1", plat="aarch64_darwin")
    assert find_binary("", home=tmp_path, platform_name="x86_64_linux") is None


def test_platform_dir_names_this_machine() -> None:
    assert platform_dir() in {
        "x86_64_linux",
        "aarch64_linux",
        "x86_64_darwin",
        "aarch64_darwin",
        "x86_64_windows",
        None,
    }
