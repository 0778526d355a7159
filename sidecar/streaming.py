"""How a turn's events reach the handler: backend failures made gateway errors, and frames written in bursts.

A chunk costs the sidecar a socket write and the handler a wake-up, so the frames a turn makes in one pass
of the event loop leave together; nothing ever waits on a timer for company.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from common.errors import BadRequestError, GatewayError, InternalError
from common.frames import pack_frame
from common.protocol import Event, Reply, encode

__all__ = ("FrameBurst", "guarded", "note_failure", "send_frame")

log = logging.getLogger("lingma_gateway.sidecar")

_QUIET = frozenset({"bad_request", "context_length_exceeded", "not_found"})
"""The caller's own mistakes: its answer says why, the operator has nothing to do."""


def note_failure(code: str, message: str) -> None:
    """A turn that ends in an error leaves a line (with the request id) for the operator."""
    if code in _QUIET:
        log.info("turn refused (%s): %s", code, message)
    elif code == "internal":
        log.error("turn failed (%s): %s", code, message)
    else:
        log.warning("turn failed (%s): %s", code, message)


async def guarded(events: AsyncIterator[Event]) -> AsyncGenerator[Event, None]:
    """Turn any non-gateway exception from a backend into ``internal`` and always close the generator."""
    try:
        async for event in events:
            yield event
    except (GatewayError, asyncio.CancelledError):
        raise
    except RecursionError:
        raise BadRequestError("the request nests too deeply") from None
    except Exception:
        log.exception("a turn failed unexpectedly")
        raise InternalError("the turn failed inside the sidecar; see its log") from None
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class FrameBurst:
    """The frames of one turn: those produced in the same pass of the event loop leave in one write.

    Nothing waits on a timer: a frame is written at the end of the loop pass that made it, so a burst
    (several chunks out of one Lingma message, or a chunk and the terminal) costs one system call, and a
    lone chunk is not delayed. ``add`` only awaits when the socket pushes back (its buffer is not empty).
    """

    __slots__ = ("_loop", "_pending", "_scheduled", "_writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._scheduled = False

    async def send(self, frame: Reply) -> None:
        self._pending.append(pack_frame(encode(frame)))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)
        writer = self._writer
        # An empty buffer cannot be over its high-water mark: drain() would return at once.
        if writer.transport.get_write_buffer_size() or writer.is_closing():
            await writer.drain()

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._writer.is_closing():
                self._writer.write(data)


async def send_frame(writer: asyncio.StreamWriter, frame: Reply) -> None:
    """One frame on its own: a unary answer, or the handshake."""
    writer.write(pack_frame(encode(frame)))
    await writer.drain()
