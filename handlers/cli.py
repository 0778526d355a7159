"""``lingma-gateway``: ``serve`` (bundled), ``handler ROUTE[,ROUTE]`` (split), ``sidecar``, ``ping``, ``login`` and
``bundle``.

Handlers never import the sidecar: ``serve`` runs it as a child process and ``sidecar`` hands over to
``python -m sidecar``, so a deploy of one route carries no process or SQLite code at all. ``login`` and
``bundle`` talk to a running sidecar over its socket (``handlers/login_cli.py``).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from common.log import exit_now, setup_logging
from common.settings import SETTINGS_HELP, Settings, SettingsError
from handlers.login_cli import add_commands, run_command
from handlers.probe import ping
from handlers.routes import ROUTES
from handlers.supervisor import SidecarSupervisor
from handlers.version import VERSION

__all__ = ("main",)

log = logging.getLogger("lingma_gateway")


def _epilog() -> str:
    width = max(len(name) for name, _ in SETTINGS_HELP)
    lines = [f"  {name.ljust(width)}  {text}" for name, text in SETTINGS_HELP]
    return "environment variables (every flag has one):\n" + "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lingma-gateway",
        description="Serve a pool of Lingma processes as OpenAI and Anthropic APIs.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lingma-gateway {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="the sidecar as a child process and every route on one port")
    handler = sub.add_parser("handler", help="serve some routes against a running sidecar")
    handler.add_argument("routes", help=f"comma-separated route names: {','.join(ROUTES)}")
    sub.add_parser("sidecar", help="run the pool sidecar alone (see: lingma-gateway sidecar --help)")
    sub.add_parser("doctor", help="check what serving needs (see: lingma-gateway doctor --help)")
    sub.add_parser("connect", help="print or write a client's settings (see: lingma-gateway connect --help)")
    ping = sub.add_parser("ping", help="exit 0 when the sidecar answers on its socket (a container probe)")
    ping.add_argument("--socket", help="sidecar socket (GATEWAY_SOCKET)")
    ping.add_argument("--ready", action="store_true", help="exit 0 only when an instance is ready")
    add_commands(sub)
    for p in (serve, handler):
        p.add_argument("--host", help="bind address (GATEWAY_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (GATEWAY_PORT, default 8787)")
        p.add_argument("--socket", help="sidecar socket (GATEWAY_SOCKET)")
        p.add_argument("--allow-open", action="store_true", help="allow a non-loopback bind with no API keys")
    serve.add_argument("--data-dir", help="data directory (GATEWAY_DATA_DIR)")
    serve.add_argument("--simulator", action="store_true", help="run the bundled Lingma simulator")
    serve.add_argument("--scenario", help="simulator scenario file (LINGMA_SIM_SCENARIO)")
    return parser


def flag_overrides(args: argparse.Namespace) -> dict[str, str | None]:
    """The flags given, by the variable each one stands for (docs/operations.md §1)."""
    port = getattr(args, "port", None)
    data_dir = getattr(args, "data_dir", None)
    scenario = getattr(args, "scenario", None)
    return {
        "GATEWAY_HOST": getattr(args, "host", None),
        "GATEWAY_PORT": None if port is None else str(port),
        "GATEWAY_SOCKET": getattr(args, "socket", None),
        "GATEWAY_DATA_DIR": data_dir and str(Path(data_dir).resolve()),
        "LINGMA_SIM_SCENARIO": scenario and str(Path(scenario).resolve()),
        "GATEWAY_ALLOW_OPEN": "true" if getattr(args, "allow_open", False) else None,
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_bind(settings: Settings) -> None:
    if settings.api_keys:
        return
    log.warning("NO API KEYS ARE SET: the gateway is open to anyone who can reach it; set API_KEYS")
    if not _is_loopback(settings.gateway_host) and not settings.gateway_allow_open:
        raise SystemExit(
            f"lingma-gateway: refusing to bind {settings.gateway_host} with no API keys; set API_KEYS or pass "
            "--allow-open"
        )


def _load(args: argparse.Namespace) -> Settings:
    try:
        return Settings.from_mapping(os.environ, flag_overrides(args))
    except SettingsError as exc:
        raise SystemExit(f"lingma-gateway: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sidecar"]:
        os.execv(sys.executable, [sys.executable, "-m", "sidecar", *argv[1:]])
    if argv[:1] == ["doctor"]:
        # The checks look at what the sidecar owns (binary, data dir, socket, instances): they live beside it.
        os.execv(sys.executable, [sys.executable, "-m", "sidecar.doctor", *argv[1:]])
    if argv[:1] == ["connect"]:
        from handlers.connect import main as connect

        return connect(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "ping":
        return ping(_load(args).socket_path, ready=args.ready)
    settings = _load(args)
    setup_logging(settings.log_level, json_lines=settings.log_json, component=args.command)
    if args.command in ("login", "bundle"):
        return run_command(args, argv, settings)
    _check_bind(settings)
    if args.command == "handler":
        routes = tuple(r.strip() for r in args.routes.split(",") if r.strip())
        unknown = [r for r in routes if r not in ROUTES]
        if unknown:
            raise SystemExit(f"lingma-gateway: unknown route(s) {', '.join(unknown)}; choose from {', '.join(ROUTES)}")
        from handlers.http_server import http_server

        http_server(settings, routes).run()
        exit_now(0)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds login sessions
    supervisor = SidecarSupervisor(settings, simulator=args.simulator)
    supervisor.spawn()
    try:
        # The HTTP stack (Litestar, uvicorn, every route) loads while the sidecar starts, not after it.
        from handlers.http_server import http_server

        server = http_server(settings, ROUTES, liveness=supervisor.liveness)
        supervisor.wait_started()
        server.run()
    finally:
        supervisor.stop()
    exit_now(0)
