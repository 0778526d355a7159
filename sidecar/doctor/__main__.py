"""``lingma-gateway doctor [--data-dir DIR] [--socket PATH] [--port N] [--simulator] [--json]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.client import socket_accepts
from common.settings import Settings, SettingsError
from sidecar.doctor.live import check_logins, check_versions, sidecar_stats
from sidecar.doctor.local import (
    check_binary,
    check_browser,
    check_data_dir,
    check_ports,
    check_socket,
    check_tokenizer,
)
from sidecar.doctor.report import Check, exit_code, render, render_json

__all__ = ("main",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lingma-gateway doctor",
        description="Check what serving needs; exit 1 when something blocks it. Reads the same settings as serve.",
    )
    parser.add_argument("--data-dir", help="data directory (GATEWAY_DATA_DIR)")
    parser.add_argument("--socket", help="sidecar socket (GATEWAY_SOCKET)")
    parser.add_argument("--host", help="the gateway's bind address (GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="the gateway's port (GATEWAY_PORT)")
    parser.add_argument("--simulator", action="store_true", help="check the bundled simulator as LINGMA_BIN")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """The flags given, by the variable each stands for (the same as ``serve``'s)."""
    overrides = {
        "GATEWAY_DATA_DIR": args.data_dir and str(Path(args.data_dir).resolve()),
        "GATEWAY_SOCKET": args.socket,
        "GATEWAY_HOST": args.host,
        "GATEWAY_PORT": None if args.port is None else str(args.port),
    }
    if args.simulator:
        from sidecar.main import simulator_binary

        overrides["LINGMA_BIN"] = simulator_binary()
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_mapping(os.environ, _overrides(args))
    except SettingsError as exc:
        print(f"FAIL  settings  {exc}", file=sys.stderr)
        return 2
    running = socket_accepts(settings.socket_path)
    stats, why = sidecar_stats(settings) if running else (None, "")
    checks: list[Check] = [
        check_binary(settings),
        check_data_dir(settings),
        check_socket(settings),
        check_ports(settings, sidecar_running=running),
        *check_logins(settings, stats),
        check_tokenizer(),
        check_browser(settings),
        check_versions(settings, stats, why),
    ]
    print(render_json(checks) if args.json else render(checks))
    return exit_code(checks)


if __name__ == "__main__":
    sys.exit(main())
