"""``lingma-gateway connect``: what it prints, and what ``--write`` does to files that already hold settings
(merged, the user's keys and comments kept, the old file backed up, owner-only permissions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def connect(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "CLAUDE_", "API_KEYS", "GATEWAY_"))}
    full = {**base, "HOME": str(home), "GATEWAY_PORT": "9911", **(env or {})}
    cmd = [sys.executable, "-m", "handlers", "connect", *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


CODEX_BEFORE = """\
# my own settings
model = "gpt-5.5"
approval_policy = "never"

[profiles.deep]
model = "o3"  # keep this comment

[model_providers.other]
name = "other"
base_url = "https://example.invalid/v1"
"""


def test_codex_write_merges_and_keeps_a_backup(short_dir: Path) -> None:
    config = short_dir / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(CODEX_BEFORE)
    done = connect(short_dir, "codex", "--write", env={"API_KEYS": "alice:sk-alice,sk-other"})
    assert done.returncode == 0, done.stderr
    text = config.read_text()
    assert "# my own settings" in text and "# keep this comment" in text
    merged = tomllib.loads(text)
    assert merged["model"] == "gpt-5.5"  # the user's model stays
    assert merged["approval_policy"] == "never"
    assert merged["profiles"]["deep"]["model"] == "o3"
    assert merged["model_providers"]["other"]["base_url"] == "https://example.invalid/v1"
    assert merged["model_provider"] == "lingma"
    lingma = merged["model_providers"]["lingma"]
    assert lingma == {
        "name": "lingma-gateway",
        "base_url": "http://127.0.0.1:9911/v1",
        "wire_api": "responses",
        "experimental_bearer_token": "sk-alice",
    }
    assert config.stat().st_mode & 0o777 == 0o600
    backups = list(config.parent.glob("config.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == CODEX_BEFORE
    # Writing again changes nothing but the gateway's own entry.
    again = connect(short_dir, "codex", "--write", "--url", "http://gw.example:80", "--key", "sk-new")
    assert again.returncode == 0, again.stderr
    merged = tomllib.loads(config.read_text())
    assert merged["model_providers"]["lingma"]["base_url"] == "http://gw.example:80/v1"
    assert merged["model_providers"]["lingma"]["experimental_bearer_token"] == "sk-new"
    assert merged["profiles"]["deep"]["model"] == "o3"


def test_claude_write_touches_only_its_env_keys(short_dir: Path) -> None:
    settings = short_dir / ".claude" / "settings.json"
    settings.parent.mkdir()
    before = {"theme": "dark", "permissions": {"allow": ["Bash(ls)"]}, "env": {"FOO": "1", "ANTHROPIC_API_KEY": "x"}}
    settings.write_text(json.dumps(before))
    done = connect(short_dir, "claude", "--write", "--key-name", "bob", env={"API_KEYS": "alice:sk-a,bob:sk-b"})
    assert done.returncode == 0, done.stderr
    after = json.loads(settings.read_text())
    assert after["theme"] == "dark" and after["permissions"] == {"allow": ["Bash(ls)"]}
    assert after["env"] == {"FOO": "1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9911", "ANTHROPIC_AUTH_TOKEN": "sk-b"}
    assert settings.stat().st_mode & 0o777 == 0o600
    assert [json.loads(b.read_text()) for b in settings.parent.glob("settings.json.bak-*")] == [before]


def test_a_file_it_cannot_read_is_left_alone(short_dir: Path) -> None:
    settings = short_dir / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("[1, 2]")
    done = connect(short_dir, "claude", "--write")
    assert done.returncode != 0 and "cannot merge" in done.stderr
    assert settings.read_text() == "[1, 2]" and not list(settings.parent.glob("*.bak-*"))


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("openai", "export OPENAI_BASE_URL=http://127.0.0.1:9911/v1\nexport OPENAI_API_KEY=sk-a\n"),
        ("anthropic", "export ANTHROPIC_BASE_URL=http://127.0.0.1:9911\nexport ANTHROPIC_API_KEY=sk-a\n"),
    ],
)
def test_sdk_settings_are_printed_and_have_no_file_to_write(short_dir: Path, client: str, expected: str) -> None:
    done = connect(short_dir, client, env={"API_KEYS": "sk-a"})
    assert done.returncode == 0 and done.stdout.startswith(expected)
    refused = connect(short_dir, client, "--write", env={"API_KEYS": "sk-a"})
    assert refused.returncode == 2 and "no config file" in refused.stderr
    assert not list(short_dir.iterdir())


def test_printing_writes_nothing_and_an_unknown_key_name_is_an_error(short_dir: Path) -> None:
    done = connect(short_dir, "codex", env={"API_KEYS": "sk-a", "GATEWAY_HOST": "0.0.0.0"})
    assert done.returncode == 0 and 'base_url = "http://127.0.0.1:9911/v1"' in done.stdout
    assert not list(short_dir.iterdir())
    missing = connect(short_dir, "claude", "--key-name", "nobody", env={"API_KEYS": "alice:sk-a"})
    assert missing.returncode != 0 and "nobody" in missing.stderr and "sk-a" not in missing.stderr
