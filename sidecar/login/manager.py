"""The login lifecycle of every instance: when an attempt starts, its retries, and what it shows.

An attempt starts when an instance is seen logged out (its prober reads ``auth/status``), auto-login is
on and the account has a username and a password, or when an admin asks. Requests never start one.
At most one runs per instance, and ``AUTO_LOGIN_MAX_BROWSERS`` browsers run at once. When the retries
are spent the instance is ``login_failed`` until an admin starts the next attempt, which protects the
account from lock-out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from common.settings import Account, Settings
from common.stats import InstanceState, LoginProgress
from sidecar.lingma.instance import LingmaInstance
from sidecar.login.browser import browser_problem, find_browser
from sidecar.login.failure import LoginFailed
from sidecar.login.flow import login_once

__all__ = ("LoginManager", "LoginRecord", "StartOutcome")

log = logging.getLogger("lingma_gateway.login")

MAX_BACKOFF = 30.0
StartOutcome = Literal["already_logged_in", "running", "already_running"]


@dataclass
class LoginRecord:
    state: Literal["idle", "running", "succeeded", "failed"] = "idle"
    attempts: int = 0
    max_attempts: int = 0
    last_error: str | None = None
    step: str = ""
    started_at: float | None = None
    finished_at: float | None = None

    def public(self) -> dict[str, Any]:
        """The progress as a JSON object, for the admin answers."""
        result: dict[str, Any] = msgspec.to_builtins(self.progress())
        return result

    def progress(self) -> LoginProgress:
        return LoginProgress(
            state=self.state,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            step=self.step,
            last_error=self.last_error,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


class LoginManager:
    def __init__(self, settings: Settings, instances: list[LingmaInstance], accounts: dict[str, Account]) -> None:
        self.settings = settings
        self._instances = {inst.id: inst for inst in instances}
        self._accounts = accounts
        self.records = {inst.id: LoginRecord() for inst in instances}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._browsers = asyncio.Semaphore(settings.auto_login_max_browsers)
        self.problem = browser_problem(settings.auto_login_browser)
        for inst in instances:
            inst.on_state = self._state_changed

    def announce(self) -> None:
        """Say at start what auto-login will and will not do."""
        with_credentials = [i for i in self._instances if self.has_credentials(i)]
        if not self.settings.auto_login_enabled:
            log.info("auto-login is off (AUTO_LOGIN_ENABLED=false)")
        elif with_credentials and self.problem:
            log.error("auto-login is on but cannot run: %s", self.problem)
        elif with_credentials:
            log.info("auto-login is on for %s", ", ".join(with_credentials))

    def has_credentials(self, instance_id: str) -> bool:
        account = self._accounts.get(instance_id)
        return account is not None and bool(account.username) and bool(account.password)

    def auto_enabled(self, instance_id: str) -> bool:
        return self.settings.auto_login_enabled and self.has_credentials(instance_id) and not self.problem

    def start(self, inst: LingmaInstance, *, headless: bool | None = None) -> StartOutcome:
        """An admin's start (API or CLI): runs even after ``login_failed`` or with auto-login off."""
        if inst.state == "ready":
            return "already_logged_in"
        if self.records[inst.id].state == "running":
            return "already_running"
        if not self.has_credentials(inst.id):
            raise LoginFailed(f"{inst.id} has no username and password to log in with", retry=False)
        if self.problem:
            raise LoginFailed(self.problem, retry=False)
        self._begin(inst, headless)
        return "running"

    def describe(self, inst: LingmaInstance) -> str:
        """Why a logged-out instance does not serve, in the words a client's error message carries."""
        rec = self.records[inst.id]
        if rec.state == "running":
            return f"{inst.id} is logging in, attempt {rec.attempts} of {rec.max_attempts}"
        if rec.state == "failed":
            return f"{inst.id}: login failed ({rec.last_error}); an admin must start a new login"
        if not self.settings.auto_login_enabled:
            return f"{inst.id} is logged out and auto-login is off: run `lingma-gateway login`"
        if not self.has_credentials(inst.id):
            return (
                f"{inst.id} is logged out and its account has no username and password: run "
                "`lingma-gateway login` or import a session bundle"
            )
        if self.problem:
            return f"{inst.id} is logged out and auto-login cannot run ({self.problem})"
        return f"{inst.id} is logged out; a login starts shortly"

    def state_of(self, inst: LingmaInstance) -> InstanceState:
        """The instance's state with the login folded in (``logging_in``, ``login_failed``)."""
        if inst.state != "login_required":
            return InstanceState(inst.state)
        rec = self.records[inst.id].state
        if rec == "running":
            return InstanceState.LOGGING_IN
        return InstanceState.LOGIN_FAILED if rec == "failed" else InstanceState.LOGIN_REQUIRED

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _state_changed(self, inst: LingmaInstance) -> None:
        rec = self.records[inst.id]
        if inst.state == "ready" and rec.state == "failed":
            rec.state = "idle"  # logged in by other means: a later expiry may log in by itself again
        if inst.state == "login_required" and rec.state not in ("running", "failed") and self.auto_enabled(inst.id):
            self._begin(inst, None)

    def _begin(self, inst: LingmaInstance, headless: bool | None) -> None:
        rec = self.records[inst.id]
        rec.state, rec.attempts, rec.step, rec.last_error = "running", 0, "waiting for a browser", None
        rec.max_attempts = self.settings.auto_login_max_retry
        rec.started_at, rec.finished_at = time.time(), None
        show = self.settings.auto_login_headless if headless is None else headless
        self._tasks[inst.id] = asyncio.create_task(self._run(inst, show), name=f"login {inst.id}")

    async def _run(self, inst: LingmaInstance, headless: bool) -> None:
        rec = self.records[inst.id]
        try:
            for attempt in range(1, rec.max_attempts + 1):
                rec.attempts = attempt
                log.info("Lingma instance %s: login attempt %d of %d", inst.id, attempt, rec.max_attempts)
                failure = await self._attempt(inst, headless)
                if failure is None:
                    rec.state, rec.step, rec.finished_at = "succeeded", "done", time.time()
                    log.info("Lingma instance %s is logged in (attempt %d)", inst.id, attempt)
                    inst.prober.poke()
                    return
                rec.last_error = failure.reason
                log.warning("Lingma instance %s: login attempt %d of %d failed: %s", inst.id, attempt,
                            rec.max_attempts, failure.reason)  # fmt: skip
                if not failure.retry or attempt == rec.max_attempts:
                    break
                rec.step = "waiting before the next attempt"
                await asyncio.sleep(min(MAX_BACKOFF, 2.0 ** (attempt - 1)))
            rec.state, rec.finished_at = "failed", time.time()
            log.error("Lingma instance %s: login failed (%s); an admin must start a new login", inst.id,
                      rec.last_error)  # fmt: skip
            inst.prober.poke()
        finally:
            self._tasks.pop(inst.id, None)

    async def _attempt(self, inst: LingmaInstance, headless: bool) -> LoginFailed | None:
        rec = self.records[inst.id]
        account = self._accounts[inst.id]
        browser = find_browser(self.settings.auto_login_browser) or ""

        def progress(step: str) -> None:
            rec.step = step
            log.info("Lingma instance %s login: %s", inst.id, step)

        try:
            async with self._browsers, asyncio.timeout(self.settings.auto_login_timeout):
                await login_once(
                    inst,
                    username=account.username,
                    password=account.password,
                    dedicated_domain=self.settings.dedicated_domain_url,
                    browser=browser,
                    headless=headless,
                    timeout=self.settings.auto_login_timeout,
                    progress=progress,
                )
        except LoginFailed as exc:
            return exc
        except TimeoutError:
            limit = self.settings.auto_login_timeout
            return LoginFailed(f"the attempt took longer than AUTO_LOGIN_TIMEOUT ({limit:g}s)")
        except Exception as exc:  # noqa: BLE001 - a library's message may quote a URL with tokens: name the type only
            log.error("Lingma instance %s: the login attempt failed unexpectedly (%s)", inst.id, type(exc).__name__)
            return LoginFailed(f"unexpected {type(exc).__name__}")
        return None
