"""One login attempt for one instance: dedicated domain, ``login/generateUrl``, the browser, confirmation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from common.errors import GatewayError
from sidecar.lingma.instance import LingmaInstance
from sidecar.login.browser import BrowserJob, drive_browser
from sidecar.login.failure import LoginFailed

__all__ = ("CONFIRM_TIMEOUT", "generate_login_url", "login_once", "set_endpoint")

log = logging.getLogger("lingma_gateway.login")

CONFIRM_TIMEOUT = 15.0


async def set_endpoint(inst: LingmaInstance, url: str) -> bool:
    """Point Lingma at a dedicated domain, only when it differs; True when an update was sent."""
    current = await inst.request("config/getEndpoint", {})
    endpoint = current.get("endpoint") if isinstance(current, dict) else None
    if endpoint == url:
        return False
    result = await inst.request("config/updateEndpoint", {"endpoint": url})
    if isinstance(result, dict) and result.get("success") is False:
        raise LoginFailed("Lingma refused the dedicated domain (config/updateEndpoint)")
    log.info("Lingma instance %s: endpoint set to the dedicated domain", inst.id)
    return True


async def generate_login_url(inst: LingmaInstance) -> str:
    result: Any = await inst.request("login/generateUrl", {"loginDedicatedType": ""})
    if not isinstance(result, dict) or result.get("success") is False or not result.get("loginUrl"):
        detail = result.get("errorMsg") or result.get("errorCode") if isinstance(result, dict) else None
        raise LoginFailed(f"login/generateUrl gave no login URL ({detail or 'no details'})")
    return str(result["loginUrl"])


async def login_once(
    inst: LingmaInstance,
    *,
    username: str,
    password: str,
    dedicated_domain: str,
    browser: str,
    headless: bool,
    timeout: float,
    progress: Callable[[str], None],
) -> None:
    """Run the whole flow once; returns when ``auth/status`` reports the login, else ``LoginFailed``."""
    try:
        if dedicated_domain:
            progress("checking the endpoint")
            await set_endpoint(inst, dedicated_domain)
        progress("asking Lingma for a login URL")
        url = await generate_login_url(inst)
        port = inst.http_port
        if port is None:
            raise LoginFailed("the Lingma process went away")
        job = BrowserJob(url, username, password, port, browser, headless, timeout)
        await drive_browser(job, progress)
        progress("confirming with auth/status")
        await confirm(inst)
    except GatewayError as exc:
        raise LoginFailed(exc.message) from None


async def confirm(inst: LingmaInstance, timeout: float = CONFIRM_TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await inst.auth_status()
        if status.get("id"):
            return
        if loop.time() >= deadline:
            raise LoginFailed("the login page finished but Lingma still reports no login")
        await asyncio.sleep(0.3)
