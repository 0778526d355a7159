"""The pool: one Lingma instance per account, kept started, picked by session, affinity or load."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from common.errors import GatewayError, NoCapacityError
from common.protocol import ModelInfo
from common.settings import Account, Settings
from common.stats import InstanceState, InstanceStats, Probes
from sidecar.admission import queue_full, remaining_wait
from sidecar.lingma.discover import find_binary
from sidecar.lingma.instance import LingmaInstance
from sidecar.lingma.models import flatten_models
from sidecar.login.bundle import BundleError, import_bundle
from sidecar.login.manager import LoginManager

__all__ = ("Pool", "instance_ids")

log = logging.getLogger("lingma_gateway.pool")

START_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
MODELS_TTL = 600.0
PROBE_TIMEOUT = 10.0


def instance_ids(settings: Settings) -> list[str]:
    """Stable ids (docs/architecture.md §4.1): an account's name, else ``acct-<n>``, else ``inst-<n>``; no username.

    In a cell (``GATEWAY_CELL``) only the cell's accounts run, and each id starts with the cell's name, so ids
    stay unique across cells and ``x-lingma-instance`` tells which cell answered.
    """
    if settings.lingma_accounts:
        ids = [a.name or f"acct-{n}" for n, a in settings.cell_accounts]
    else:
        ids = [f"inst-{n}" for n in range(settings.instance_count)]
    return [f"{settings.gateway_cell}-{iid}" for iid in ids] if settings.gateway_cell else ids


class Pool:
    def __init__(self, settings: Settings, instances: Sequence[LingmaInstance] | None = None) -> None:
        """One instance per account from ``settings``, unless ``instances`` are given already built."""
        self.settings = settings
        self.binary = settings.lingma_bin or find_binary("") or ""
        work = settings.work_dir
        # The simulator reads its scenario from its environment; a real Lingma ignores the variable.
        scenario = {"LINGMA_SIM_SCENARIO": settings.lingma_sim_scenario} if settings.lingma_sim_scenario else None
        self.instances = (
            list(instances)
            if instances is not None
            else [
                LingmaInstance(
                    instance_id=iid,
                    binary=self.binary,
                    work_dir=work / iid,
                    first_port=settings.lingma_socket_port + 2 * n,
                    startup_timeout=settings.lingma_startup_timeout,
                    rpc_timeout=settings.lingma_rpc_timeout,
                    first_chunk_timeout=settings.lingma_first_chunk_timeout,
                    probe_interval=settings.lingma_probe_interval,
                    probe_timeout=settings.lingma_probe_timeout,
                    probe_misses=settings.lingma_probe_misses,
                    env=scenario,
                )
                for n, iid in enumerate(instance_ids(settings))
            ]
        )
        self._by_id = {inst.id: inst for inst in self.instances}
        cell_accounts = [account for _n, account in settings.cell_accounts]
        self.accounts: dict[str, Account] = dict(zip(instance_ids(settings), cell_accounts, strict=False))
        self.login = LoginManager(settings, self.instances, self.accounts)
        self._keepers: list[asyncio.Task[None]] = []
        self._models: dict[str, tuple[float, list[ModelInfo]]] = {}
        self._released = asyncio.Condition()
        self._busy: Counter[str] = Counter()
        self._cooldown: dict[str, float] = {}
        """Instance id -> the unix time its cool-down ends."""
        self._recovering: dict[str, asyncio.Task[None]] = {}
        """Instance id -> the task that probes it back into rotation when its cool-down ends."""
        self.limit = settings.instance_limit

    async def start(self) -> None:
        if not self.binary:
            message = "no Lingma binary found: set LINGMA_BIN, or run with --simulator"
            log.error(message)
            for inst in self.instances:
                inst.last_error = message
            return
        self.login.announce()
        for n, inst in enumerate(self.instances):
            Path(inst.work_dir).mkdir(parents=True, exist_ok=True)
            self._import_bundle(n, inst)
            self._keepers.append(asyncio.create_task(self._keep_started(inst), name=f"start {inst.id}"))
        # Give the first start a chance to finish before traffic arrives; never block past the startup timeout.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.lingma_startup_timeout + 5):
                await asyncio.gather(*(i.wait_ready(self.settings.lingma_startup_timeout) for i in self.instances))
                # Learn the model lists now, so the first turn does not wait on config/queryModels.
                await asyncio.gather(*(self.models_of(i) for i in self.ready()), return_exceptions=True)

    def _import_bundle(self, n: int, inst: LingmaInstance) -> None:
        """Before Lingma starts: an account's bundle for its instance, ``LINGMA_SESSION_BUNDLE`` for the first."""
        account = self.accounts.get(inst.id)
        bundle = account.session_bundle if account and account.session_bundle else None
        if bundle is None and n == 0:
            bundle = self.settings.lingma_session_bundle or None
        if not bundle:
            return
        try:
            applied = import_bundle(bundle, inst.work_dir, account=inst.id)
        except BundleError as exc:
            inst.last_error = str(exc)
            log.error("%s", exc)
            return
        if applied:
            log.info("instance %s: session bundle imported", inst.id)
        else:
            log.info("instance %s already holds a login; its session bundle was not applied", inst.id)

    async def _keep_started(self, inst: LingmaInstance) -> None:
        """Retry a start that failed (binary missing, port trouble); the instance supervises itself after."""
        for attempt in range(10_000):
            try:
                await inst.start()
                return
            except GatewayError as exc:
                inst.last_error = exc.message
                delay = START_BACKOFF[min(attempt, len(START_BACKOFF) - 1)]
                log.warning("instance %s failed to start (%s); retrying in %ss", inst.id, exc.message, delay)
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        await self.login.stop()
        tasks = [*self._keepers, *self._recovering.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(inst.stop() for inst in self.instances), return_exceptions=True)

    def get(self, instance_id: str) -> LingmaInstance | None:
        return self._by_id.get(instance_id)

    def ready(self) -> list[LingmaInstance]:
        return [i for i in self.instances if i.state == "ready" and i.id not in self._cooldown]

    def cool_down(self, inst: LingmaInstance, seconds: float | None, reason: str) -> None:
        """Keep an instance that reported quota or rate limits out of rotation (docs/architecture.md §4.4)."""
        wait = min(self.settings.gateway_cooldown_max_sec, seconds or self.settings.gateway_cooldown_max_sec)
        self._cooldown[inst.id] = time.time() + wait
        log.warning("instance %s cools down for %.0fs: %s", inst.id, wait, reason)
        if inst.id not in self._recovering:
            self._recovering[inst.id] = asyncio.create_task(self._recover(inst), name=f"recover {inst.id}")

    async def _recover(self, inst: LingmaInstance) -> None:
        """When the cool-down ends, probe with ``auth/status``; only an answer puts the instance back."""
        try:
            while (until := self._cooldown.get(inst.id)) is not None:
                await asyncio.sleep(max(0.0, until - time.time()))
                if self._cooldown.get(inst.id, 0.0) > time.time():
                    continue  # cooled down again meanwhile
                try:
                    async with asyncio.timeout(PROBE_TIMEOUT):
                        await inst.auth_status()
                except (GatewayError, TimeoutError) as exc:
                    reason = exc.message if isinstance(exc, GatewayError) else "no answer to auth/status"
                    self._cooldown[inst.id] = time.time() + min(PROBE_TIMEOUT, self.settings.gateway_cooldown_max_sec)
                    log.warning("instance %s failed its probe after cooling down (%s)", inst.id, reason)
                    continue
                del self._cooldown[inst.id]
                log.info("instance %s is back after cooling down", inst.id)
        finally:
            self._recovering.pop(inst.id, None)

    def no_capacity(self) -> GatewayError:
        """Answered at once when nothing can serve; the message says what each instance is doing."""
        parts = [self._why(i) for i in self.instances]
        cooling = [until - time.time() for until in self._cooldown.values()]
        retry = max(1.0, min(cooling)) if cooling else 5.0
        if all(i.state == "login_required" for i in self.instances):
            retry = 10.0 if any(self.login.records[i.id].state == "running" for i in self.instances) else 30.0
        return NoCapacityError(f"no Lingma instance can serve now: {'; '.join(parts)}", retry_after_s=retry)

    def _why(self, inst: LingmaInstance) -> str:
        if inst.state == "login_required":
            return self.login.describe(inst)
        if inst.state == "unhealthy" and inst.last_error:
            return f"{inst.id} is unhealthy ({inst.last_error})"
        return f"{inst.id} is {self._state(inst)}"

    def _state(self, inst: LingmaInstance) -> InstanceState:
        if inst.id in self._cooldown and inst.state == "ready":
            return InstanceState.COOLING_DOWN
        return self.login.state_of(inst)

    def choose(self, preferred: str | None, affinity: str | None) -> LingmaInstance:
        ready = self.ready()
        if not ready:
            raise self.no_capacity()
        if preferred is not None:
            inst = self._by_id.get(preferred)
            if inst is not None and inst in ready:
                return inst
        if affinity:
            return max(ready, key=lambda i: hashlib.sha256(f"{affinity}\0{i.id}".encode()).digest())
        return min(ready, key=lambda i: (self._busy[i.id], i.served_total))

    @contextlib.asynccontextmanager
    async def slot(self, inst: LingmaInstance) -> AsyncIterator[None]:
        """Reserve an instance turn slot (docs/architecture.md §4.3) within what is left of the queue wait."""
        queue_timeout = self.settings.gateway_queue_timeout_sec
        async with self._released:
            try:
                async with asyncio.timeout(remaining_wait(queue_timeout)):
                    await self._released.wait_for(lambda: self._busy[inst.id] < self.limit)
            except TimeoutError:
                raise queue_full(f"instance {inst.id}", self.limit, queue_timeout) from None
            self._busy[inst.id] += 1
        try:
            yield
        finally:
            self._busy[inst.id] -= 1  # at once: a second cancellation while waiting for the lock must not leak it
            async with self._released:
                self._released.notify_all()

    async def models_of(self, inst: LingmaInstance) -> list[ModelInfo]:
        cached = self._models.get(inst.id)
        if cached is not None and cached[1] and time.monotonic() - cached[0] < MODELS_TTL:
            return cached[1]
        models = flatten_models(await inst.query_models())
        self._models[inst.id] = (time.monotonic(), models)
        return models

    async def all_models(self) -> list[ModelInfo]:
        seen: dict[str, ModelInfo] = {}
        for inst in self.ready():
            with contextlib.suppress(GatewayError):
                for model in await self.models_of(inst):
                    seen.setdefault(model.key, model)
        return list(seen.values())

    def snapshot(self) -> list[InstanceStats]:
        return [self._instance_stats(i) for i in self.instances]

    def _instance_stats(self, inst: LingmaInstance) -> InstanceStats:
        state = self._state(inst)
        return InstanceStats(
            id=inst.id,
            state=state,
            pid=inst.pid or 0,
            in_flight=self._busy[inst.id],
            served_total=inst.served_total,
            restarts_total=inst.restarts_total,
            unhealthy_total=inst.unhealthy_total,
            probes=Probes(
                total=inst.prober.probes_total,
                missed_total=inst.prober.missed_total,
                busy_total=inst.prober.busy_total,
                missed_in_a_row=inst.prober.misses,
                last_answer_at=inst.prober.last_answer_at,
            ),
            auth=dict(inst.auth),
            auto_login=self.login.records[inst.id].progress(),
            reason=self._why(inst) if state != InstanceState.READY else None,
            cooldown_until=self._cooldown.get(inst.id),
            last_error=inst.last_error,
        )
