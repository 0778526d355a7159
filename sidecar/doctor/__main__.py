"""``lingma-gateway doctor [--data-dir DIR] [--socket PATH] [--port N] [--simulator] [--json]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common.client import socket_accepts
from common.settings import SettingsError, load_settings
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


def _apply(args: argparse.Namespace) -> None:
    if args.data_dir:
        os.environ["GATEWAY_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if args.socket:
        os.environ["GATEWAY_SOCKET"] = args.socket
    if args.host:
        os.environ["GATEWAY_HOST"] = args.host
    if args.port:
        os.environ["GATEWAY_PORT"] = str(args.port)
    if args.simulator:
        from sidecar.main import simulator_binary

        os.environ["LINGMA_BIN"] = simulator_binary()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _apply(args)
    try:
        settings = load_settings()
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
