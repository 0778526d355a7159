"""``lingma-gateway sidecar``: run the pool and its socket until SIGTERM, then drain."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from common.log import setup_logging
from common.settings import Settings, SettingsError, load_settings
from sidecar.admission import Admission
from sidecar.backend import Backend
from sidecar.key_share import KeyShare
from sidecar.server import SidecarServer, SocketInUseError
from sidecar.stats import StatsBook

__all__ = ("main", "simulator_binary")

log = logging.getLogger("lingma_gateway.sidecar")


def simulator_binary() -> str:
    """The installed ``lingma-sim``: beside this interpreter first, then on PATH."""
    beside = Path(sys.executable).with_name("lingma-sim")
    if beside.exists():
        return str(beside)
    found = shutil.which("lingma-sim")
    if found is None:
        raise SystemExit("lingma-gateway: --simulator needs the lingma-sim script, which is not installed")
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lingma-gateway sidecar", description="Run the Lingma pool sidecar.")
    parser.add_argument("--data-dir", help="data directory (GATEWAY_DATA_DIR)")
    parser.add_argument("--socket", help="Unix socket path (GATEWAY_SOCKET)")
    parser.add_argument("--simulator", action="store_true", help="use the bundled Lingma simulator as LINGMA_BIN")
    parser.add_argument("--scenario", help="simulator scenario file (LINGMA_SIM_SCENARIO)")
    parser.add_argument("--script", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def apply_flags(args: argparse.Namespace) -> None:
    """Flags are shorthands for settings: write them to the environment the settings are read from."""
    if args.data_dir:
        os.environ["GATEWAY_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if args.socket:
        os.environ["GATEWAY_SOCKET"] = args.socket
    if args.simulator:
        os.environ["LINGMA_BIN"] = simulator_binary()
    if args.scenario:
        os.environ["LINGMA_SIM_SCENARIO"] = str(Path(args.scenario).resolve())


def build_backend(settings: Settings, stats: StatsBook, script: str | None) -> Backend:
    if script:
        from sidecar.backends.scripted import ScriptedBackend

        return ScriptedBackend(Path(script), stats)
    from sidecar.service import LingmaBackend

    return LingmaBackend(settings, stats)


async def run(settings: Settings, script: str | None) -> int:
    stats = StatsBook()
    backend = build_backend(settings, stats, script)
    admission = Admission(settings.gateway_max_in_flight, settings.gateway_queue_timeout_sec)
    server = SidecarServer(
        settings.socket_path,
        backend,
        admission=admission,
        stats=stats,
        mode=settings.gateway_socket_mode,
        key_share=KeyShare(settings.gateway_key_max_in_flight),
    )
    try:
        await server.start()
    except SocketInUseError as exc:
        log.error("%s", exc)
        return 3
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await backend.start()
        log.info("sidecar ready")
        await stop.wait()
        log.info("draining")
    finally:
        await server.drain()
        await backend.stop()
        log.info("sidecar stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_flags(args)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"lingma-gateway: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, json_lines=settings.log_json, component="sidecar")
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds login sessions
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return asyncio.run(run(settings, args.script))
    return uvloop.run(run(settings, args.script))
