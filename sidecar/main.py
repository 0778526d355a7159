"""``lingma-gateway sidecar``: run the pool and its socket until SIGTERM, then drain."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from common.log import setup_logging
from common.settings import Settings, SettingsError
from sidecar.admission import Admission
from sidecar.backend import Backend
from sidecar.datadir import DataDirLock, StartupError, make_private
from sidecar.key_share import KeyShare
from sidecar.server import SidecarServer, SocketInUseError, check_socket_free
from sidecar.stats import StatsBook

__all__ = ("EXIT_SOCKET_IN_USE", "EXIT_STARTUP", "flag_overrides", "main", "simulator_binary")

log = logging.getLogger("lingma_gateway.sidecar")

EXIT_SOCKET_IN_USE = 3
EXIT_STARTUP = 4
"""A start-up error the operator must fix (data dir in use or unwritable, session cache locked or read-only)."""


def simulator_binary() -> str:
    """The installed ``lingma-sim``: beside this interpreter first, then on PATH.

    In the single executable (``scripts/build-binary``) it is a ``lingma-sim`` link to the executable itself,
    which runs the simulator when called by that name; the link lives in the executable's private unpack
    directory, so it goes away with it.
    """
    if getattr(sys, "frozen", False):
        return _self_as_simulator(Path(getattr(sys, "_MEIPASS", tempfile.gettempdir())))
    beside = Path(sys.executable).with_name("lingma-sim")
    if beside.exists():
        return str(beside)
    found = shutil.which("lingma-sim")
    if found is None:
        raise SystemExit("lingma-gateway: --simulator needs the lingma-sim script, which is not installed")
    return found


def _self_as_simulator(directory: Path) -> str:
    link = directory / "lingma-sim"
    with contextlib.suppress(FileExistsError):
        link.symlink_to(sys.executable)
    return str(link)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lingma-gateway sidecar", description="Run the Lingma pool sidecar.")
    parser.add_argument("--data-dir", help="data directory (GATEWAY_DATA_DIR)")
    parser.add_argument("--socket", help="Unix socket path (GATEWAY_SOCKET)")
    parser.add_argument("--simulator", action="store_true", help="use the bundled Lingma simulator as LINGMA_BIN")
    parser.add_argument("--scenario", help="simulator scenario file (LINGMA_SIM_SCENARIO)")
    parser.add_argument("--script", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def flag_overrides(
    *, data_dir: str | None, socket: str | None, simulator: bool, scenario: str | None = None
) -> dict[str, str | None]:
    """Flags are shorthands for settings: the variable each one given stands for, laid over the environment."""
    return {
        "GATEWAY_DATA_DIR": data_dir and str(Path(data_dir).resolve()),
        "GATEWAY_SOCKET": socket,
        "LINGMA_BIN": simulator_binary() if simulator else None,
        "LINGMA_SIM_SCENARIO": scenario and str(Path(scenario).resolve()),
    }


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
        data_dir=settings.data_dir,
    )
    # Storage first: a socket that accepts means the sidecar got past everything an operator must fix.
    try:
        await backend.open()
        await server.start()
    except (StartupError, SocketInUseError) as exc:
        log.error("%s", exc)
        await backend.stop()
        return EXIT_SOCKET_IN_USE if isinstance(exc, SocketInUseError) else EXIT_STARTUP
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


def _settings_for(component: str, overrides: dict[str, str | None]) -> Settings | None:
    """Settings, logging and the umask that every process working on a data dir starts with; None if invalid."""
    try:
        settings = Settings.from_mapping(os.environ, overrides)
    except SettingsError as exc:
        print(f"lingma-gateway: {exc}", file=sys.stderr)
        return None
    setup_logging(settings.log_level, json_lines=settings.log_json, component=component)
    # websockets logs every frame at DEBUG, and Lingma's frames carry tokens (auth/status): never below INFO.
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))
    # Conversations, Lingma's login state and its logs live under the data dir: owner-only, whatever the umask.
    os.umask(0o077)
    return settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["login"], ["bundle"]):
        return _offline(argv)
    args = parse_args(argv)
    overrides = flag_overrides(
        data_dir=args.data_dir, socket=args.socket, simulator=args.simulator, scenario=args.scenario
    )
    settings = _settings_for("sidecar", overrides)
    if settings is None:
        return 2
    lock = DataDirLock(settings.data_dir)
    try:
        check_socket_free(settings.socket_path)
        make_private(settings.data_dir, settings.work_dir)
        lock.acquire()
    except (StartupError, SocketInUseError) as exc:
        log.error("%s", exc)
        return EXIT_SOCKET_IN_USE if isinstance(exc, SocketInUseError) else EXIT_STARTUP
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
            return asyncio.run(run(settings, args.script))
        return uvloop.run(run(settings, args.script))
    finally:
        lock.release()


def _offline(argv: list[str]) -> int:
    """``login`` and ``bundle`` on a data dir that no running gateway serves."""
    from sidecar.offline import parse, run_offline

    args = parse(argv)
    settings = _settings_for(
        "cli", flag_overrides(data_dir=args.data_dir, socket=args.socket, simulator=args.simulator)
    )
    if settings is None:
        return 2
    lock = DataDirLock(settings.data_dir)
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock.acquire()  # no gateway may start on this data dir meanwhile
    except (OSError, StartupError) as exc:
        print(f"lingma-gateway: {exc}", file=sys.stderr)
        return 1
    try:
        return run_offline(args, settings)
    finally:
        lock.release()
