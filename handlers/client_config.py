"""Merging the gateway into a client's own configuration file without touching anything else in it.

Codex's ``config.toml`` is edited with tomlkit, which keeps the user's comments and layout; Claude Code's
``settings.json`` gets keys in its ``env`` block only. A file that exists is copied aside first, and the new
one replaces it atomically with owner-only permissions (it holds the key).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

__all__ = ("PROVIDER", "merge_claude", "merge_codex", "write_config")

PROVIDER = "lingma"
"""The Codex ``model_providers`` entry the gateway owns; other providers are left alone."""


def merge_codex(text: str, *, base_url: str, key: str, model: str) -> str:
    """``text`` (a config.toml, maybe empty) with the gateway as the default provider."""
    doc = tomlkit.parse(text)
    doc["model_provider"] = PROVIDER
    if "model" not in doc:
        doc["model"] = model
    providers = doc.get("model_providers")
    if not isinstance(providers, Table):
        providers = tomlkit.table(is_super_table=True)
        doc["model_providers"] = providers
    entry = providers.get(PROVIDER)
    if not isinstance(entry, Table):
        entry = tomlkit.table()
        providers[PROVIDER] = entry
    entry["name"] = "lingma-gateway"
    entry["base_url"] = base_url
    entry["wire_api"] = "responses"
    entry["experimental_bearer_token"] = key
    return tomlkit.dumps(doc)


def merge_claude(text: str, *, base_url: str, key: str) -> str:
    """``text`` (a settings.json, maybe empty) with the gateway's URL and key in its ``env`` block."""
    data: Any = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("the settings file does not hold a JSON object")
    env = data.setdefault("env", {})
    if not isinstance(env, dict):
        raise ValueError('the settings file\'s "env" is not a JSON object')
    env["ANTHROPIC_BASE_URL"] = base_url
    env["ANTHROPIC_AUTH_TOKEN"] = key
    # Both set would send a key meant for Anthropic to the gateway, and Claude Code warns about the conflict.
    env.pop("ANTHROPIC_API_KEY", None)
    return json.dumps(data, indent=2) + "\n"


def write_config(path: Path, content: str) -> Path | None:
    """Replace ``path`` with ``content`` (mode 600); return where the previous file was kept, if there was one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    backup: Path | None = None
    if path.exists():
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(path, backup)
        os.chmod(backup, 0o600)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup
