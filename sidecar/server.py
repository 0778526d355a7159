"""The sidecar's Unix-socket server: handshake, per-connection dispatch, cancellation on EOF, drain.

One call at a time per connection. While a turn streams, a watcher reads the socket: EOF means the
handler went away, so the producer is cancelled and Lingma is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from pathlib import Path

import msgspec

from common.client import socket_accepts
from common.errors import GatewayError
from common.frames import FrameError, read_frame
from common.log import REQUEST_ID
from common.protocol import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Complete,
    CountTokens,
    ExportSession,
    Failed,
    Finished,
    GetStats,
    Hello,
    HelloOk,
    ImportSession,
    ListModels,
    LoginCallback,
    LoginStart,
    LoginStatus,
    LoginUrl,
    ModelList,
    Ping,
    Pong,
    RawModels,
    RawResult,
    Reply,
    Request,
    Stats,
    TokenCount,
    decode_request,
)
from common.stats import StatsReport
from sidecar.admission import Admission
from sidecar.backend import Backend
from sidecar.key_share import KeyShare
from sidecar.stats import StatsBook
from sidecar.streaming import FrameBurst, guarded, note_failure, send_frame
from sidecar.usage import UsageBook

__all__ = ("SidecarServer", "SocketInUseError", "check_socket_free")

log = logging.getLogger("lingma_gateway.sidecar")


class SocketInUseError(RuntimeError):
    """Another live sidecar already serves this socket path."""


def check_socket_free(path: Path) -> bool:
    """Raise ``SocketInUseError`` if a live sidecar (or a non-socket) holds ``path``; True if a stale file does."""
    if not (path.exists() or path.is_symlink()):
        return False
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise SocketInUseError(f"{path} exists and is not a socket; refusing to replace it")
    if socket_accepts(path):
        raise SocketInUseError(f"another sidecar is already serving {path}")
    return True


class SidecarServer:
    def __init__(
        self,
        path: Path,
        backend: Backend,
        *,
        admission: Admission,
        stats: StatsBook,
        mode: int = 0o600,
        drain_timeout: float = 30.0,
        key_share: KeyShare | None = None,
        usage: UsageBook | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.path = path
        self.data_dir = data_dir
        self._data_dir_text = str(data_dir.resolve()) if data_dir is not None else ""
        """Named in every handshake: resolved once, not per connection."""
        self.backend = backend
        self.admission = admission
        self.key_share = key_share or KeyShare(0)
        self.usage = usage or UsageBook()
        self.stats = stats
        self.mode = mode
        self.drain_timeout = drain_timeout
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self._draining = False

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if check_socket_free(self.path):
            log.warning("replacing a stale socket file left by a sidecar that did not exit cleanly")
            self.path.unlink()
        old_umask = os.umask(0o777 & ~self.mode)
        try:
            # A burst of new streams opens as many connections at once; past the backlog a Unix-socket
            # connect fails at once (EAGAIN) rather than waiting, so the backlog is the kernel's maximum.
            self._server = await asyncio.start_unix_server(self.serve_connection, path=str(self.path), backlog=_BACKLOG)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, self.mode)
        log.info("sidecar listening on its socket", extra={"socket": str(self.path)})

    async def drain(self) -> None:
        """Stop accepting, let turns in flight finish (bounded), then close every connection."""
        self._draining = True
        if self._server is not None:
            self._server.close()
        if self._streams:
            _done, pending = await asyncio.wait(set(self._streams), timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
        for task in set(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:  # only a started server made the socket file
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One handler connection, from the handshake to EOF: what the socket runs, or an in-process transport."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if await self._handshake(reader, writer):
                await self._serve(reader, writer)
        except (FrameError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("connection dropped: %s", exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        body = await read_frame(reader)
        if body is None:
            return False
        try:
            op: Request | None = decode_request(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            op = None
        if not isinstance(op, Hello):
            await send_frame(writer, Failed(code="protocol", message="the first frame must be Hello"))
            return False
        if op.major != PROTOCOL_MAJOR:
            message = (
                f"handler protocol {op.major}.{op.minor} is incompatible with sidecar protocol "
                f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}; run the same major version on both sides"
            )
            log.error(message)
            await send_frame(writer, Failed(code="protocol", message=message))
            return False
        hello = HelloOk(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR, pid=os.getpid(), data_dir=self._data_dir_text)
        await send_frame(writer, hello)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        carried = b""
        while True:
            body = await read_frame(reader, carried=carried)
            carried = b""
            if body is None:
                return
            try:
                op = decode_request(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # A newer handler may send an operation this sidecar does not know: answer, keep the connection.
                message = f"this sidecar (protocol {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}) cannot serve that request: {exc}"
                await send_frame(writer, Failed(code="bad_request", message=message))
                continue
            except RecursionError:
                await send_frame(writer, Failed(code="bad_request", message="the request nests too deeply"))
                continue
            if isinstance(op, Complete):
                gone, carried = await self._stream(op, reader, writer)
                if gone:
                    return
            else:
                await send_frame(writer, await self._unary(op))

    async def _unary(self, op: Request) -> Reply:
        try:
            match op:
                case Ping():
                    ready, count = self.backend.readiness()
                    return Pong(ready=ready and not self._draining, instances_ready=count)
                case GetStats():
                    return Stats(report=self.snapshot())
                case ListModels():
                    return ModelList(models=await self.backend.models())
                case RawModels(instance=instance):
                    return RawResult(json=await self.backend.raw_models(instance))
                case LoginStart() | LoginStatus() | LoginUrl() | LoginCallback() | ExportSession() | ImportSession():
                    return await self.backend.admin(op)
                case CountTokens(conversation=conversation):
                    self.stats.requests["count_tokens"] += 1
                    return TokenCount(input_tokens=await self.backend.count_tokens(conversation))
                case _:
                    return Failed(code="bad_request", message=f"unexpected operation {type(op).__name__}")
        except GatewayError as exc:
            return exc.failed
        except RecursionError:
            return Failed(code="bad_request", message="the request nests too deeply")
        except Exception:
            log.exception("unary operation failed")
            return Failed(code="internal", message="the sidecar failed to answer; see its log")

    async def _stream(
        self, op: Complete, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """Run one turn. Returns whether the handler went away, and any byte of its next request already read."""
        if self._draining:
            refusal = Failed(code="no_capacity", message="the sidecar is shutting down", retry_after_s=1)
            await send_frame(writer, refusal)
            return False, b""
        producer = asyncio.create_task(self._produce(op, writer))
        self._streams.add(producer)
        watcher = asyncio.create_task(reader.read(1))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if producer.done():
                producer.result()
                # The handler may already have sent its next request, whose first byte the watcher took.
                if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
                    first = watcher.result()
                    return first == b"", first
                return False, b""
            # The handler closed its end (or sent something out of turn): cancel the turn.
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
            return True, b""
        finally:
            self._streams.discard(producer)
            if not watcher.done():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watcher

    async def _produce(self, op: Complete, writer: asyncio.StreamWriter) -> None:
        REQUEST_ID.set(op.request_id or "-")  # this task's own context: the handler's id in every log line
        terminal_sent = False
        burst = FrameBurst(writer)
        try:
            key = op.conversation.api_key_name or "open"
            metered = self.usage.metered(key, guarded(self.backend.complete(op)))
            waited = time.time() - op.arrived_at if op.arrived_at else 0.0
            admitted = self.admission.slot(waited=waited)
            async with self.key_share.slot(key), admitted, contextlib.aclosing(metered) as events:
                async for event in events:
                    await burst.send(event)
                    if isinstance(event, Failed):
                        note_failure(event.code, event.message)
                        self.stats.note_failure(event.code)
                    if isinstance(event, (Finished, Failed)):
                        terminal_sent = True
                        break
        except asyncio.CancelledError:
            self.stats.requests["cancelled_by_client"] += 1
            if self._draining and not terminal_sent:
                with contextlib.suppress(Exception):
                    await burst.send(Failed(code="upstream_unavailable", message="the sidecar is shutting down"))
            raise
        except GatewayError as exc:
            self.stats.requests[f"failed_{exc.code}"] += 1
            note_failure(exc.code, exc.message)
            self.stats.note_failure(exc.code)
            if not terminal_sent:
                await burst.send(exc.failed)
            return
        finally:
            burst.flush()
        if not terminal_sent:
            await send_frame(writer, Failed(code="internal", message="the turn ended without a terminal event"))

    def snapshot(self) -> StatsReport:
        book = self.stats
        return StatsReport(
            requests=dict(sorted(book.requests.items())),
            pool=self.backend.pool_stats(),
            session_cache=dict(sorted(book.session_cache.items())),
            tools=dict(sorted(book.tools.items())),
            recent_failures=book.recent_failures(),
            backpressure=self.admission.snapshot(),
            key_share=self.key_share.snapshot(),
            usage=self.usage.snapshot(),
        )


_BACKLOG = 4096
"""The kernel caps it at ``net.core.somaxconn`` (4096 by default)."""
