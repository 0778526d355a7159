"""One supervised Lingma process and its connection: start, log-in state, models, and turns.

``sidecar.lingma.supervisor`` watches the process and restarts it; this module holds what it restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from common.errors import GatewayError, NoCapacityError, UpstreamUnavailableError
from common.settings import AskMode
from sidecar.lingma.ask import run_ask
from sidecar.lingma.errors import logged_out_error
from sidecar.lingma.events import UpstreamEvent
from sidecar.lingma.params import ask_params, initialize_params, tool_unavailable_result
from sidecar.lingma.pidfile import end_stale_process
from sidecar.lingma.prober import Prober
from sidecar.lingma.process import LingmaProcess, launch
from sidecar.lingma.rpc import JsonObject, RpcConnection
from sidecar.lingma.supervisor import supervise

__all__ = ("LingmaInstance", "ProcessState")

log = logging.getLogger(__name__)

ProcessState = Literal["starting", "login_required", "ready", "restarting", "unhealthy", "stopped"]
"""The process's own states; operators see ``common.stats.InstanceState``, which folds in login and cool-down."""

_AUTH_KEYS = ("status", "id", "accountId", "name", "userType", "cloudType", "expireTime", "whitelist")
"""What of ``auth/status`` the gateway keeps and shows: never the tokens it also carries."""


class LingmaInstance:
    """A Lingma process in its own work dir, kept alive, with the calls the gateway needs."""

    def __init__(
        self,
        *,
        instance_id: str,
        binary: str,
        work_dir: Path,
        first_port: int,
        startup_timeout: float,
        rpc_timeout: float,
        first_chunk_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        restart_delay: float = 1.0,
        probe_interval: float = 2.0,
        probe_timeout: float = 2.0,
        probe_misses: int = 3,
    ) -> None:
        self.id = instance_id
        self.binary = binary
        self.work_dir = work_dir
        self.first_port = first_port
        self.startup_timeout = startup_timeout
        self.rpc_timeout = rpc_timeout
        self.first_chunk_timeout = rpc_timeout if first_chunk_timeout is None else first_chunk_timeout
        self.restart_delay = restart_delay
        self._env = dict(env) if env else None
        self._state: ProcessState = "stopped"
        self._changed = asyncio.Event()
        self._proc: LingmaProcess | None = None
        self._conn: RpcConnection | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts_total = 0
        self.last_error: str | None = None
        self.served_total = 0
        self.unhealthy_total = 0
        self.auth: JsonObject = {}
        """The last ``auth/status`` answer, without its tokens."""
        self.on_state: Callable[[LingmaInstance], None] | None = None
        """Called after every state change (the pool starts logins from it)."""
        self.prober = Prober(
            f"Lingma instance {instance_id}",
            probe=self._read_auth,
            can_probe=self._probe_wanted,
            on_hung=self._hung,
            interval=probe_interval,
            timeout=probe_timeout,
            misses=probe_misses,
            activity=self._messages_received,
        )
        self._probing: asyncio.Task[None] | None = None

    @property
    def state(self) -> ProcessState:
        return self._state

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running(self) -> tuple[LingmaProcess, RpcConnection] | None:
        """The process and its connection, while both are there."""
        proc, conn = self._proc, self._conn
        return (proc, conn) if proc is not None and conn is not None else None

    @property
    def socket_port(self) -> int | None:
        return self._proc.socket_port if self._proc is not None else None

    @property
    def http_port(self) -> int | None:
        """Lingma's HTTP port (the OAuth callback lands there)."""
        return self._proc.http_port if self._proc is not None else None

    async def start(self) -> None:
        """Spawn, handshake and read the login state; raises ``UpstreamUnavailableError`` on failure."""
        if self._watcher is not None and not self._watcher.done():
            return
        self._stopping = False
        self.set_state("starting")
        try:
            await self.spawn()
        except GatewayError as exc:
            self.last_error = exc.message
            self.set_state("unhealthy")
            raise
        self._watcher = asyncio.create_task(supervise(self), name=f"lingma {self.id} watcher")
        self._probing = asyncio.create_task(self.prober.run(), name=f"lingma {self.id} prober")

    async def stop(self) -> None:
        self._stopping = True
        watcher, self._watcher = self._watcher, None
        probing, self._probing = self._probing, None
        for task in (watcher, probing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.shutdown(f"Lingma instance {self.id} was stopped")
        self.set_state("stopped")

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the instance is ready; False on timeout or once it settles logged out or stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = self._state
            if state == "ready":
                return True
            remaining = deadline - loop.time()
            if state in ("login_required", "stopped") or remaining <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def auth_status(self) -> JsonObject:
        """``auth/status``; also moves the instance between ready and login_required."""
        return await self._read_auth(self.rpc_timeout)

    async def query_models(self) -> JsonObject:
        """The raw ``config/queryModels`` result: scene -> list of model entries (``{}`` when logged out)."""
        result = await self._connection().request("config/queryModels", {}, timeout=self.rpc_timeout)
        return result if isinstance(result, dict) else {}

    async def request(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Any other Lingma method (login, endpoint), with ``rpc_timeout``."""
        return await self._connection().request(method, params, timeout=self.rpc_timeout)

    async def ask(
        self,
        *,
        question: str,
        model_key: str,
        session_id: str | None,
        is_reply: bool,
        mode: AskMode,
        request_id: str | None = None,
    ) -> AsyncGenerator[UpstreamEvent, None]:
        """One ``chat/ask``: ``AskAccepted``, then session, text, reasoning and tool events, then ``AskFinished``.

        Leaving early (``aclose``, cancellation) sends ``chat/stop`` so Lingma stops generating.
        """
        conn = await self._connection_for_ask()
        params = ask_params(
            request_id=request_id or uuid.uuid4().hex,
            question=question,
            model_key=model_key,
            session_id=session_id,
            is_reply=is_reply,
            mode=mode,
        )
        events = run_ask(
            conn, params, instance_id=self.id, timeout=self.rpc_timeout, first_chunk_timeout=self.first_chunk_timeout
        )
        try:
            async for event in events:
                yield event
            self.served_total += 1
        except NoCapacityError:
            self.set_state("login_required")
            self.prober.poke()
            raise
        finally:
            await events.aclose()

    async def _connection_for_ask(self) -> RpcConnection:
        if self._state == "login_required" and self._conn is not None and not self._conn.closed:
            await self.auth_status()
            if self._state == "login_required":
                raise logged_out_error(self.id)
        if self._state != "ready" or self._conn is None or self._conn.closed:
            retry = self.restart_delay if self._state in ("starting", "restarting") else None
            raise NoCapacityError(f"Lingma instance {self.id} is {self._state}", retry_after_s=retry)
        return self._conn

    def _connection(self) -> RpcConnection:
        if self._conn is None or self._conn.closed:
            raise UpstreamUnavailableError(f"Lingma instance {self.id} is {self._state}")
        return self._conn

    async def spawn(self) -> None:
        """Spawn and handshake; ``UpstreamUnavailableError`` when it fails (the process is ended then)."""
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            await end_stale_process(self.work_dir)
            proc, ws = await launch(
                binary=self.binary,
                work_dir=self.work_dir,
                first_port=self.first_port,
                startup_timeout=self.startup_timeout,
                env=self._env,
            )
        except OSError as exc:
            raise UpstreamUnavailableError(f"cannot start Lingma instance {self.id}: {exc}") from exc
        conn = RpcConnection(ws, name=f"Lingma instance {self.id}")
        conn.tool_handler = lambda invoke: self._answer_tool(conn, invoke)
        conn.on_close = self._connection_lost
        conn.start()
        try:
            await conn.request(
                "initialize", initialize_params(self.work_dir, name=self.id), timeout=self.startup_timeout
            )
            # 2.11.1 logs "unknown method: initialized"; known clients send it anyway (docs/lingma-protocol.md §3).
            await conn.notify("initialized", {})
            self._proc, self._conn = proc, conn
            await self._read_auth(self.startup_timeout, launching=True)
        except BaseException as exc:
            self._proc = self._conn = None
            await conn.close(f"Lingma instance {self.id} failed to start")
            await proc.stop()
            if isinstance(exc, GatewayError) and not isinstance(exc, UpstreamUnavailableError):
                raise UpstreamUnavailableError(f"Lingma instance {self.id} failed its handshake: {exc}") from exc
            raise

    async def _read_auth(self, timeout: float, *, launching: bool = False) -> JsonObject:
        result = await self._connection().request("auth/status", {}, timeout=timeout)
        status: JsonObject = result if isinstance(result, dict) else {}
        self.auth = {k: status[k] for k in _AUTH_KEYS if k in status}
        if not self._stopping and (launching or self._state in ("ready", "login_required")):
            # Logged in means a truthy user id (docs/lingma-protocol.md §4.1).
            self.set_state("ready" if status.get("id") else "login_required")
        return status

    def _messages_received(self) -> int:
        conn = self._conn
        return conn.messages_received if conn is not None else 0

    def _probe_wanted(self) -> bool:
        return self._state in ("ready", "login_required") and self._conn is not None and not self._conn.closed

    def recycle(self, reason: str) -> None:
        """Restart the process (it reads its work dir again), through the watcher's usual path."""
        proc = self._proc
        if proc is not None and not self._stopping:
            log.info("Lingma instance %s: restarting (%s)", self.id, reason)
            proc.kill()

    async def _hung(self, reason: str) -> None:
        """Take a hung process out of the rotation and kill it; the watcher then restarts it."""
        proc = self._proc
        if proc is None or self._stopping:
            return
        log.error("%s; restarting it", reason)
        self.last_error = reason
        self.unhealthy_total += 1
        self.set_state("unhealthy")
        proc.kill()

    def _connection_lost(self, reason: str) -> None:
        """Leave "ready" the moment the socket goes, before the watcher task gets to run."""
        if not self._stopping and self._state in ("ready", "login_required"):
            self.set_state("restarting")

    async def _answer_tool(self, conn: RpcConnection, invoke: JsonObject) -> None:
        """Lingma's agent wants an IDE tool run; a gateway answers that it cannot (docs/lingma-protocol.md §7)."""
        result = tool_unavailable_result(invoke)
        await conn.request("tool/invokeResult", result, timeout=min(self.rpc_timeout, 30.0))

    async def shutdown(self, reason: str) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            await conn.close(reason)
        if proc is not None:
            await proc.stop()

    def set_state(self, state: ProcessState) -> None:
        if state != self._state:
            log.info("Lingma instance %s: %s -> %s", self.id, self._state, state)
            self._state = state
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
            if self.on_state is not None:
                self.on_state(self)
