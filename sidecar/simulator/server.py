"""``lingma-sim start``: bind the WebSocket and HTTP ports, serve until SIGINT or SIGTERM.

A port already in use ends the process at once with a message on stderr and status 1, so a client
that picks ports can retry with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from .chat import ChatService
from .cli import VERSION, StartOptions
from .framing import FrameError, FrameParser
from .http_login import LoginHttp
from .journal import DEFAULT_MAX_BYTES, Journal
from .methods import Dispatcher
from .models import MODEL_KEYS
from .rpc import Connection
from .scenario import ScenarioError, TurnPicker, load_scenario
from .sessions import SessionStore
from .state import LoginNonces, WorkDir, default_user

__all__ = ("serve",)

_log = logging.getLogger("sidecar.simulator")
_MAX_MESSAGE = 64 * 1024 * 1024
_CLOSE_TIMEOUT_S = 3.0


def _setup_logging(work: WorkDir) -> None:
    handler = logging.FileHandler(work.logs / "lingma.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


class _Simulator:
    def __init__(self, dispatcher: Dispatcher, chat: ChatService, journal: Journal, quirks: bool) -> None:
        self._dispatcher = dispatcher
        self._chat = chat
        self._journal = journal
        self._quirks = quirks
        self._push_ids = itertools.count(1)

    async def on_connection(self, ws: ServerConnection) -> None:
        conn = Connection(ws, self._journal, quirks=self._quirks, push_ids=self._push_ids)
        parser = FrameParser()
        _log.info("websocket client connected from %s", ws.remote_address)
        try:
            async for message in ws:
                for item in parser.feed(message):
                    if isinstance(item, FrameError):
                        await self._dispatcher.handle_error(conn, item)
                    else:
                        await self._dispatcher.handle_frame(conn, item.body)
        except ConnectionClosed:
            pass
        finally:
            self._chat.connection_closed(conn)
            _log.info("websocket client disconnected")


async def serve(options: StartOptions) -> int:
    work = WorkDir(options.work_dir)
    machine_id = work.prepare()
    _setup_logging(work)
    _log.info("Lingma %s (simulator) starting, workDir %s", VERSION, work.root)
    _log.info("using machine id from file: %s", machine_id)
    try:
        scenario, digest = load_scenario(os.environ.get("LINGMA_SIM_SCENARIO"))
    except ScenarioError as exc:
        print(f"lingma-sim: {exc}", file=sys.stderr)
        return 2
    http = LoginHttp(work, LoginNonces(), scenario.login)
    if not (_env_flag("LINGMA_SIM_LOGGED_OUT") or scenario.login.start_logged_out) and work.user() is None:
        work.write_user(http.first_login(default_user(machine_id)))
    quirks = os.environ.get("LINGMA_SIM_QUIRKS", "1").strip() not in ("0", "false", "no", "off")

    journal = Journal(
        Path(os.environ.get("LINGMA_SIM_JOURNAL") or work.root / "sim-journal.jsonl"),
        max_bytes=_env_bytes("LINGMA_SIM_JOURNAL_MAX_BYTES", DEFAULT_MAX_BYTES),
    )
    nonces = http.nonces
    picker = TurnPicker(scenario, digest, work.root.name, work.scenario_cursor)
    chat = ChatService(
        SessionStore(work.sessions),
        picker,
        journal,
        is_logged_in=lambda: work.user() is not None,
        model_keys=MODEL_KEYS,
    )
    dispatcher = Dispatcher(work, chat, nonces, journal, http_port=options.http_port, default_endpoint=options.endpoint)
    simulator = _Simulator(dispatcher, chat, journal, quirks)

    # The HTTP port first: a client that dials the WebSocket must never talk to a process about to exit
    # because its second port was taken.
    try:
        http_server = await asyncio.start_server(http.handle, "127.0.0.1", options.http_port)
    except OSError as exc:
        print(f"lingma-sim: cannot listen on http port {options.http_port}: {exc}", file=sys.stderr)
        _log.error("http port %d unavailable: %s", options.http_port, exc)
        return 1
    try:
        ws_server: Server = await ws_serve(
            simulator.on_connection,
            "127.0.0.1",
            options.socket_port,
            max_size=_MAX_MESSAGE,
            ping_interval=None,
            compression=None,
        )
    except OSError as exc:
        http_server.close()
        print(f"lingma-sim: cannot listen on websocket port {options.socket_port}: {exc}", file=sys.stderr)
        _log.error("websocket port %d unavailable: %s", options.socket_port, exc)
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _log.info("Using http server: 127.0.0.1:%d", options.http_port)
    _log.info("Using profile websocket channel: none (simulator)")
    _log.info("Communication servers ready - WebSocket: %d, HTTP: %d", options.socket_port, options.http_port)

    await stop.wait()
    _log.info("received stop signal, shutting down")
    http_server.close()
    ws_server.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await ws_server.wait_closed()
            await http_server.wait_closed()
    journal.close()
    return 0
