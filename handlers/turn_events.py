"""A turn's events as a handler takes them: a pump task reads the sidecar into a buffer, taken by the burst.

The pump keeps reading while the handler waits with a timeout (for its commit point or its next heartbeat),
so a timeout never cancels a read. The buffer is a deque with one waiter rather than a queue: every event
of a burst the pump read is there at once, and ``next_burst`` takes them all in one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from common.client import SidecarClient
from common.protocol import Complete, Event, Failed, Started

__all__ = ("OpenTurn",)

_END = object()


class OpenTurn:
    """One streamed call: its pump task, the events it read and not yet taken, and the commit point's state."""

    def __init__(self, client: SidecarClient, op: Complete) -> None:
        self.loop = asyncio.get_running_loop()
        """Held: on Python 3.11 every ``get_running_loop()`` is a ``getpid()`` system call."""
        self._items: deque[Event | BaseException | object] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task = asyncio.create_task(self._pump(client, op))
        self.started: Started | None = None
        self.pending: list[Event] = []

    async def _pump(self, client: SidecarClient, op: Complete) -> None:
        try:
            async with client.stream(op) as events:
                async for event in events:
                    self._put(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who decides
            self._put(exc)
        self._put(_END)

    def _put(self, item: Event | BaseException | object) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _arrived(self, timeout: float | None) -> bool:
        """Whether something is buffered, waiting up to ``timeout`` for it."""
        if self._items:
            return True
        if timeout is not None and timeout <= 0:
            return False
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return bool(self._items)

    async def next(self, timeout: float | None) -> Event | None:
        """The next event, or ``None`` when ``timeout`` passed first."""
        if not await self._arrived(timeout):
            return None
        return _unwrap(self._items.popleft())

    async def next_burst(self, timeout: float | None) -> list[Event] | None:
        """Every event already read (at least one), or ``None`` when ``timeout`` passed first.

        A failure of the pump comes after the events read before it, alone, on the next call.
        """
        if not await self._arrived(timeout):
            return None
        return self.ready() or [_unwrap(self._items.popleft())]

    def ready(self) -> list[Event]:
        """The events already read, without waiting; none past a failure of the pump or its end."""
        items = self._items
        out: list[Event] = []
        while items and not (isinstance(items[0], BaseException) or items[0] is _END):
            out.append(items.popleft())  # type: ignore[arg-type]
        return out

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _unwrap(item: Event | BaseException | object) -> Event:
    if isinstance(item, BaseException):
        raise item
    if item is _END:
        return Failed(code="internal", message="the sidecar ended the turn without a terminal event")
    return item  # type: ignore[return-value]
