"""The handlers' client for the sidecar: a pool of connections over a transport (its Unix socket, or in process).

A connection goes back to the pool only after the terminal frame of its call was read; on any other
exit (an early ``break``, cancellation, an error) it is closed, and the sidecar sees EOF and cancels
the work. A missing or dead socket is ``SidecarUnavailableError`` at once, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

from common.connection import Connection, Pulse
from common.conversation import Conversation
from common.errors import GatewayError, InternalError, ProtocolVersionError, SidecarUnavailableError
from common.frames import pack_frame
from common.protocol import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    AdminRequest,
    AdminResult,
    Complete,
    CountTokens,
    Event,
    Failed,
    Finished,
    GetStats,
    Hello,
    HelloOk,
    ListModels,
    ModelInfo,
    ModelList,
    Ping,
    Pong,
    RawModels,
    RawResult,
    ReasoningDelta,
    Reply,
    Request,
    Started,
    Stats,
    TextDelta,
    TokenCount,
    ToolCall,
    decode_reply,
    encode,
)
from common.stats import StatsReport
from common.transport import InProcessTransport, Transport, UnixTransport

__all__ = ("InProcessTransport", "SidecarClient", "Transport", "UnixTransport", "sidecar_identity", "socket_accepts")

log = logging.getLogger("lingma_gateway.client")

T = TypeVar("T")
_EVENT_TYPES = (Started, TextDelta, ReasoningDelta, ToolCall, Finished, Failed)

CONNECT_TIMEOUT = 1.0
"""How long a sidecar may send nothing at all, on any connection, before a handshake gives up on it."""
UNARY_TIMEOUT = 30.0
_SETTLE_PASSES = 4


def socket_accepts(path: str | Path, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the Unix socket at ``path`` (a blocking probe)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def sidecar_identity(path: str | Path, timeout: float = 2.0) -> HelloOk | None:
    """The handshake of whatever sidecar serves ``path`` (its pid and data dir), or None if none answers."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout)
    try:
        probe.connect(str(path))
        probe.sendall(pack_frame(encode(Hello(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR))))
        header = _recv_exactly(probe, 4)
        reply = decode_reply(_recv_exactly(probe, int.from_bytes(header, "big")))
    except (OSError, ValueError):
        return None
    finally:
        probe.close()
    return reply if isinstance(reply, HelloOk) else None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    if size > 1 << 20:
        raise ValueError("not a sidecar handshake")
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    return data


_HELLO = pack_frame(encode(Hello(major=PROTOCOL_MAJOR, minor=PROTOCOL_MINOR)))


class SidecarClient:
    """Pooled client; one call at a time per connection, so frames need no request ids."""

    def __init__(
        self,
        target: str | Path | Transport,
        *,
        max_idle: int = 32,
        connect_timeout: float = CONNECT_TIMEOUT,
        handshake_timeout: float = UNARY_TIMEOUT,
    ) -> None:
        self.transport: Transport = UnixTransport(target) if isinstance(target, (str, Path)) else target
        self._idle: deque[Connection] = deque()
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._handshake_timeout = max(handshake_timeout, connect_timeout)
        self._pulse = Pulse()
        self.connections_opened = 0
        """How many connections this client has dialled; tests use it to see reuse."""

    async def _connect(self, first: bytes) -> Connection:
        """Dial, and send the Hello with ``first`` (the call's request frame) in one write: no round trip between them.

        A socket that is missing or refuses is ``SidecarUnavailableError`` at once, as is a connection the
        sidecar closes. A sidecar that answers nothing at all for ``connect_timeout`` is hung and unavailable
        too; one that is only slow because a burst of connections keeps it busy is not (see ``_hello_reply``).
        """
        try:
            # Not timed: a Unix-socket connect succeeds or fails (missing, refused, backlog full) at once, and a
            # busy handler loop may take longer than any timeout to run the callback that completes it.
            reader, writer = await self.transport.connect()
        except OSError as exc:
            reason = type(exc).__name__
            raise SidecarUnavailableError(f"the sidecar is not reachable at its socket ({reason})") from None
        conn = Connection(reader, writer, self._pulse)
        try:
            writer.write(_HELLO + first)
            await writer.drain()
            reply = await self._hello_reply(conn)
        except OSError as exc:
            conn.close()
            raise SidecarUnavailableError(
                f"the sidecar is not reachable at its socket ({type(exc).__name__})"
            ) from None
        except BaseException:
            conn.close()
            raise
        if isinstance(reply, Failed):
            conn.close()
            raise GatewayError.carrying(reply)
        if not isinstance(reply, HelloOk):
            conn.close()
            raise InternalError("the sidecar answered the handshake with an unexpected frame")
        if reply.major != PROTOCOL_MAJOR:
            conn.close()
            raise ProtocolVersionError(
                f"sidecar protocol {reply.major}.{reply.minor} is incompatible with handler protocol "
                f"{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"
            )
        self.connections_opened += 1
        return conn

    async def _hello_reply(self, conn: Connection) -> Reply:
        """The handshake's answer, waiting as long as the sidecar shows it is alive.

        Under a burst of new connections both processes are busy and a handshake can take longer than
        ``connect_timeout`` while the sidecar answers hundreds of others; it is given up on once the sidecar
        has sent nothing on any connection for a whole ``connect_timeout``, and in any case after
        ``handshake_timeout`` (a sidecar whose old streams flow but which never answers new connections).
        """
        answer = asyncio.ensure_future(conn.receive())
        give_up_at = time.monotonic() + self._handshake_timeout
        try:
            while True:
                waiting_since = time.monotonic()
                await asyncio.wait({answer}, timeout=self._connect_timeout)
                # A loop that was itself too busy may not yet have read, or handed on, what already arrived: a few
                # more passes first (each pass polls the sockets, then runs the readers it woke).
                for _ in range(_SETTLE_PASSES):
                    if answer.done() or self._pulse.heard_at >= waiting_since:
                        break
                    await asyncio.sleep(0)
                if answer.done():
                    return answer.result()
                if self._pulse.heard_at < waiting_since or time.monotonic() >= give_up_at:
                    raise SidecarUnavailableError("the sidecar is not reachable at its socket (TimeoutError)")
        finally:
            if not answer.done():
                answer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await answer

    def _pooled(self) -> Connection | None:
        while self._idle:
            conn = self._idle.popleft()
            if conn.usable:
                return conn
            conn.close()
        return None

    def _release(self, conn: Connection) -> None:
        if conn.usable and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def _start(self, op: Request) -> tuple[Connection, Reply]:
        """Send ``op`` and read the first frame, on a pooled connection or else a new one.

        A pooled connection that went stale is replaced once by a new one. On any failure (including
        cancellation) the connection is closed here, so nothing leaks.
        """
        frame = pack_frame(encode(op))
        conn = self._pooled()
        if conn is not None:
            try:
                return conn, await conn.exchange(frame)
            except (SidecarUnavailableError, OSError):
                conn.close()
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(frame)
        try:
            return conn, await conn.receive()
        except BaseException:
            conn.close()
            raise

    async def request(self, op: Request) -> Reply:
        """A unary call: exactly one reply frame. A ``Failed`` is raised as it is, carried by its ``GatewayError``."""
        try:
            async with asyncio.timeout(UNARY_TIMEOUT):
                conn, reply = await self._start(op)
        except TimeoutError:
            raise SidecarUnavailableError("the sidecar did not answer in time") from None
        self._release(conn)
        if isinstance(reply, Failed):
            raise GatewayError.carrying(reply)
        return reply

    @contextlib.asynccontextmanager
    async def stream(self, op: Complete) -> AsyncIterator[AsyncIterator[Event]]:
        """Open a streamed call. Failures before the first frame raise here; later ones arrive as ``Failed``."""
        conn, first = await self._start(op)
        done = False
        if isinstance(first, Failed):
            self._release(conn)
            raise GatewayError.carrying(first)

        async def frames() -> AsyncIterator[Event]:
            # Frames come a burst at a time: those of one read are yielded without waiting in between.
            nonlocal done
            burst: list[Reply] = [first]
            while True:
                for frame in burst:
                    if not isinstance(frame, _EVENT_TYPES):
                        raise InternalError(f"unexpected frame {type(frame).__name__} in a stream")
                    if isinstance(frame, (Finished, Failed)):
                        # Only a terminal read off the wire frees the connection, even if the consumer stops here.
                        done = True
                        yield frame
                        return
                    yield frame
                try:
                    burst = await conn.receive_burst()
                except SidecarUnavailableError as exc:
                    yield exc.failed  # the terminal of a broken connection, made once where the break is seen
                    return

        try:
            yield frames()
        finally:
            if done:
                self._release(conn)
            else:
                conn.close()

    async def ping(self) -> Pong:
        reply = await self.request(Ping())
        return _expect(reply, Pong)

    async def stats(self) -> StatsReport:
        return _expect(await self.request(GetStats()), Stats).report

    async def models(self) -> list[ModelInfo]:
        return _expect(await self.request(ListModels()), ModelList).models

    async def raw_models(self, instance: str | None) -> str:
        return _expect(await self.request(RawModels(instance=instance)), RawResult).json

    async def count_tokens(self, conversation: Conversation) -> int:
        return _expect(await self.request(CountTokens(conversation=conversation)), TokenCount).input_tokens

    async def admin(self, op: AdminRequest) -> AdminResult:
        """A login or session-bundle operation; the answer carries its own HTTP status."""
        return _expect(await self.request(op), AdminResult)

    async def aclose(self) -> None:
        while self._idle:
            self._idle.popleft().close()


def _expect(reply: Reply, kind: type[T]) -> T:
    if not isinstance(reply, kind):
        raise InternalError(f"expected {kind.__name__} from the sidecar, got {type(reply).__name__}")
    return reply
