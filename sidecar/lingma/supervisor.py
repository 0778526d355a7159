"""Supervision of one Lingma process: notice it exit (or its socket close), restart it with a capped backoff.

It follows uvicorn's and pygls' shape: a watcher task per instance waits for the process to exit or the
socket to close, ends the connection (which fails every turn in flight with ``UpstreamUnavailableError``) and
starts the process again, with an exponential backoff capped at ``MAX_RESTART_DELAY``, until the instance is
stopped. A process that ran ``STABLE_UPTIME`` before dying starts the backoff over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from common.errors import UpstreamUnavailableError

if TYPE_CHECKING:
    from sidecar.lingma.instance import LingmaInstance

__all__ = ("EXIT_GRACE", "MAX_RESTART_DELAY", "STABLE_UPTIME", "supervise")

log = logging.getLogger("sidecar.lingma.instance")

MAX_RESTART_DELAY = 30.0
STABLE_UPTIME = 30.0
"""A process that ran this long before dying resets the restart backoff."""
EXIT_GRACE = 0.5


async def supervise(inst: LingmaInstance) -> None:
    """Watch and restart ``inst``'s process until the instance is stopped."""
    failures = 0
    try:
        while not inst.stopping:
            started = time.monotonic()
            reason = await _wait_for_exit(inst)
            if _stopped(inst):
                return
            failures = 0 if time.monotonic() - started >= STABLE_UPTIME else failures + 1
            hung = inst.state == "unhealthy"
            if not hung:
                log.warning("%s; restarting", reason)
                inst.last_error = reason
            await inst.shutdown(reason)
            if not hung:  # a hung process stays "unhealthy" until it is back
                inst.set_state("restarting")
            failures = await _restart(inst, failures)
    except Exception as exc:
        log.exception("the watcher of Lingma instance %s failed", inst.id)
        inst.last_error = f"watcher failed: {exc!r}"
        inst.set_state("unhealthy")


def _stopped(inst: LingmaInstance) -> bool:
    """Read the flag again after an await (a plain test would be narrowed away by mypy)."""
    return inst.stopping


async def _restart(inst: LingmaInstance, failures: int) -> int:
    """Start again after a backoff, until it works or the instance is stopped; returns the failures."""
    cap = max(inst.restart_delay, MAX_RESTART_DELAY)
    while not inst.stopping:
        await asyncio.sleep(min(inst.restart_delay * 2 ** max(failures - 1, 0), cap))
        inst.restarts_total += 1
        try:
            await inst.spawn()
            return failures
        except UpstreamUnavailableError as exc:
            failures += 1
            inst.last_error = exc.message
            inst.set_state("unhealthy")
            log.warning("restarting Lingma instance %s failed: %s", inst.id, exc.message)
    return failures


async def _wait_for_exit(inst: LingmaInstance) -> str:
    running = inst.running
    if running is None:
        return f"Lingma instance {inst.id} is not running"
    proc, conn = running
    exited = asyncio.ensure_future(proc.wait())
    closed = asyncio.ensure_future(conn.wait_closed())
    try:
        await asyncio.wait({exited, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            # A dying process usually closes its socket first; give the exit a moment to be seen.
            await asyncio.wait({exited}, timeout=EXIT_GRACE)
    finally:
        exited.cancel()
        closed.cancel()
    if proc.returncode is not None:
        return f"Lingma instance {inst.id} exited with code {proc.returncode}"
    return f"lost the connection to Lingma instance {inst.id}"
