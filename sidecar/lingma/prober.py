"""One prober per Lingma instance: ``auth/status`` with a short deadline, on a timer and on demand.

The same call serves two purposes. Its answer is the live login state (an instance logged in by any
means rejoins the rotation, one whose login expired leaves it), and its absence is the liveness signal:
a process that misses ``misses`` probes in a row is hung, and ``on_hung`` takes it out and restarts it.
After a miss the next probe goes out at once, so a hang is detected in about
``interval + misses * timeout`` seconds. A probe that goes unanswered while the process keeps sending
other messages (``activity``: under a burst of turns its answer waits behind theirs) is busy, not hung,
and is not a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from common.errors import GatewayError, UpstreamTimeoutError

__all__ = ("Prober",)

log = logging.getLogger(__name__)


class Prober:
    def __init__(
        self,
        name: str,
        *,
        probe: Callable[[float], Awaitable[object]],
        can_probe: Callable[[], bool],
        on_hung: Callable[[str], Awaitable[None]],
        interval: float,
        timeout: float,
        misses: int,
        activity: Callable[[], int] | None = None,
    ) -> None:
        self.name = name
        self._probe = probe
        self._activity = activity or (lambda: 0)
        """A count of the messages the process has sent: if it moved during a probe, the process is alive."""
        self._can_probe = can_probe
        self._on_hung = on_hung
        self.interval = interval
        self.timeout = timeout
        self.max_misses = max(1, misses)
        self.misses = 0
        self.probes_total = 0
        self.missed_total = 0
        self.hung_total = 0
        self.busy_total = 0
        """Probes unanswered in time while the process kept sending other messages."""
        self.last_answer_at: float | None = None
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Probe now rather than at the next tick (after a login, an import, a logged-out refusal)."""
        self._wake.set()

    async def run(self) -> None:
        """Probe forever; cancel the task to stop."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.probe_once()

    async def probe_once(self) -> bool | None:
        """One probe: True when answered, False when missed, None when there was nothing to probe."""
        if not self._can_probe():
            self.misses = 0
            return None
        self.probes_total += 1
        sent = self._activity()
        try:
            async with asyncio.timeout(self.timeout):
                await self._probe(self.timeout)
        except (TimeoutError, UpstreamTimeoutError):
            if self._activity() != sent:
                self.busy_total += 1
                log.info("%s answered other messages but not auth/status within %gs: busy, not hung",
                         self.name, self.timeout)  # fmt: skip
                return None
            return await self._missed()
        except GatewayError as exc:
            # The connection went away: the supervisor sees that on its own and restarts the process.
            log.debug("%s: probe failed: %s", self.name, exc.message)
            return None
        self.misses = 0
        self.last_answer_at = time.time()
        return True

    async def _missed(self) -> bool:
        self.misses += 1
        self.missed_total += 1
        log.warning("%s did not answer auth/status within %gs (%d of %d)", self.name, self.timeout, self.misses,
                    self.max_misses)  # fmt: skip
        if self.misses < self.max_misses:
            self._wake.set()
            return False
        self.misses = 0
        self.hung_total += 1
        await self._on_hung(f"{self.name} missed {self.max_misses} liveness probes of {self.timeout:g}s: it is hung")
        return False
