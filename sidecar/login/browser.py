"""Driving the system's Chromium through the login page with Playwright (an optional extra, ``login``).

Playwright's own browser download cannot work on many hosts, so the browser is the system's Chromium
(``AUTO_LOGIN_BROWSER``, else ``chromium`` on PATH) launched through ``executable_path``. What the
browser does on each page comes from ``sidecar.login.steps``.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sidecar.login.failure import LoginFailed, scrub
from sidecar.login.steps import STEPS, PageStep

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ("BROWSER_FLAGS", "BrowserJob", "at_callback", "browser_problem", "drive_browser", "find_browser")

log = logging.getLogger("lingma_gateway.login")

BROWSER_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_ACTIONS = 12
_IDLE_POLL_MS = 250


@dataclass(frozen=True, slots=True)
class BrowserJob:
    url: str
    username: str
    password: str
    callback_port: int
    """Lingma's ``--httpPort``: the page hands the login over at ``http://127.0.0.1:<port>/auth/callback``."""
    browser: str
    headless: bool
    timeout: float

    def __repr__(self) -> str:
        return f"BrowserJob(browser={self.browser!r}, headless={self.headless})"


def find_browser(configured: str) -> str | None:
    """The Chromium executable: the setting when given (a path or a name on PATH), else a known name."""
    if configured:
        return shutil.which(configured)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_problem(configured: str) -> str | None:
    """Why a browser login cannot run here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install 'lingma-gateway[login]')"
    if find_browser(configured) is None:
        where = f"AUTO_LOGIN_BROWSER={configured}" if configured else "chromium on PATH"
        return f"no Chromium was found ({where}); install Debian's chromium or set AUTO_LOGIN_BROWSER"
    return None


async def drive_browser(job: BrowserJob, progress: Callable[[str], None]) -> None:
    """Walk the login page until the browser reaches the callback; ``LoginFailed`` otherwise."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    try:
        async with async_playwright() as pw:
            progress("starting the browser")
            browser = await pw.chromium.launch(
                executable_path=job.browser, headless=job.headless, args=list(BROWSER_FLAGS)
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(min(15_000.0, job.timeout * 1000))
                progress("opening the login page")
                await page.goto(job.url, wait_until="load")
                await _walk(page, job, progress)
            finally:
                await browser.close()
    except PlaywrightError as exc:
        raise LoginFailed(f"the browser failed: {scrub(exc.message)}") from None


async def _walk(page: Page, job: BrowserJob, progress: Callable[[str], None]) -> None:
    deadline = time.monotonic() + job.timeout
    actions = 0
    while time.monotonic() < deadline:
        if at_callback(page.url, job.callback_port):
            progress("the page handed the login to Lingma")
            return
        step = await _current_step(page)
        if step is None:
            await page.wait_for_timeout(_IDLE_POLL_MS)
            continue
        if step.kind == "human":
            raise LoginFailed(
                f"the login page asks for a person ({step.name}): run `lingma-gateway login --show-browser`, "
                "or import a session bundle",
                retry=False,
            )
        if step.kind == "refused":
            raise LoginFailed("wrong username or password")
        actions += 1
        if actions > MAX_ACTIONS:
            raise LoginFailed(f"the login page did not reach the callback after {MAX_ACTIONS} steps")
        progress(f"page step: {step.name}")
        await _act(page, step, job)
    raise LoginFailed(f"the login page did not finish within {job.timeout:g}s")


def at_callback(url: str, port: int) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname in ("127.0.0.1", "localhost") and parts.port == port and parts.path == "/auth/callback"


async def _current_step(page: Page) -> PageStep | None:
    for step in STEPS:
        if await page.locator(step.detect).count() > 0:
            return step
    return None


async def _act(page: Page, step: PageStep, job: BrowserJob) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    for selector, what in step.fill:
        field = page.locator(selector).first
        if await field.count() > 0:
            await field.fill(job.username if what == "username" else job.password)
    before = page.url
    try:
        async with page.expect_navigation(wait_until="load"):
            await page.locator(step.press).first.click()
    except PlaywrightTimeout:
        # The page may change in place (script-driven steps); the next look decides.
        log.debug("no navigation after %s (was on %s)", step.name, scrub(before))
