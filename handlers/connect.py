"""``lingma-gateway connect claude|codex|openai|anthropic``: the exact settings a client needs for this gateway.

The URL comes from ``GATEWAY_HOST``/``GATEWAY_PORT`` (or ``--url``), the key from ``API_KEYS`` (``--key-name``
picks a named one) or ``--key``. ``--write`` merges them into the client's own file (see ``client_config``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from common.settings import Settings, SettingsError, load_settings
from handlers.client_config import PROVIDER, merge_claude, merge_codex, write_config

__all__ = ("main",)

CLIENTS = ("claude", "codex", "openai", "anthropic")
OPEN_KEY = "lingma-gateway-open"
"""What clients that insist on a key send to a gateway without API keys (it accepts anything then)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lingma-gateway connect", description="Print (or --write) a client's settings for this gateway."
    )
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("--url", help="the gateway's URL (default: from GATEWAY_HOST and GATEWAY_PORT)")
    parser.add_argument("--key", help="the API key to use (default: the first of API_KEYS)")
    parser.add_argument("--key-name", help="use the key named NAME in API_KEYS (NAME:KEY)")
    parser.add_argument("--model", default="auto", help="Codex's model when its config names none (default: auto)")
    parser.add_argument("--write", action="store_true", help="merge into the client's config file, keeping a backup")
    parser.add_argument("--config", help="the file to write (default: the client's own)")
    return parser


def gateway_url(settings: Settings) -> str:
    host = settings.gateway_host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.gateway_port}"


def choose_key(settings: Settings, key: str | None, key_name: str | None) -> str:
    if key:
        return key
    if key_name:
        for name, candidate in settings.api_key_names:
            if name == key_name:
                return candidate
        raise SystemExit(f"lingma-gateway connect: no key named {key_name!r} in API_KEYS (use NAME:KEY entries)")
    return settings.api_keys[0] if settings.api_keys else OPEN_KEY


def config_path(client: str, given: str | None) -> Path:
    if given:
        return Path(given).expanduser()
    home = Path(os.environ.get("HOME") or Path.home())
    if client == "codex":
        return Path(os.environ.get("CODEX_HOME") or home / ".codex") / "config.toml"
    return Path(os.environ.get("CLAUDE_CONFIG_DIR") or home / ".claude") / "settings.json"


def _show(client: str, url: str, key: str, model: str) -> str:
    if client == "openai":
        return (
            f"export OPENAI_BASE_URL={url}/v1\nexport OPENAI_API_KEY={key}\n\n"
            f'# OpenAI(base_url="{url}/v1", api_key="{key}")\n'
        )
    if client == "anthropic":
        return (
            f"export ANTHROPIC_BASE_URL={url}\nexport ANTHROPIC_API_KEY={key}\n\n"
            f'# Anthropic(base_url="{url}", api_key="{key}")\n'
        )
    if client == "codex":
        block = merge_codex("", base_url=f"{url}/v1", key=key, model=model)
        return f"# {config_path('codex', None)}\n{block}"
    block = merge_claude("", base_url=url, key=key)
    env = f"ANTHROPIC_BASE_URL={url} ANTHROPIC_AUTH_TOKEN={key} claude"
    return f"// {config_path('claude', None)}\n{block}\n# or, for one run: {env}\n"


def _write(client: str, path: Path, url: str, key: str, model: str) -> str:
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        if client == "codex":
            merged = merge_codex(current, base_url=f"{url}/v1", key=key, model=model)
        else:
            merged = merge_claude(current, base_url=url, key=key)
    except (ValueError, json.JSONDecodeError) as exc:
        raise SystemExit(f"lingma-gateway connect: cannot merge into {path}: {exc}") from None
    backup = write_config(path, merged)
    what = f"model_provider {PROVIDER!r}" if client == "codex" else "the env block"
    kept = f"; the previous file is kept as {backup}" if backup else ""
    return f"wrote {what} to {path} for {url}{kept}\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SystemExit(f"lingma-gateway: {exc}") from None
    url = (args.url or gateway_url(settings)).rstrip("/").removesuffix("/v1")
    key = choose_key(settings, args.key, args.key_name)
    if not args.write:
        sys.stdout.write(_show(args.client, url, key, args.model))
        return 0
    if args.client in ("openai", "anthropic"):
        print(f"lingma-gateway connect: the {args.client} SDK has no config file; set these instead:", file=sys.stderr)
        sys.stderr.write(_show(args.client, url, key, args.model))
        return 2
    sys.stdout.write(_write(args.client, config_path(args.client, args.config), url, key, args.model))
    return 0
