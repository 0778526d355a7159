"""The operator side of logins and bundles: the answers of ``/internal/auto-login/*`` and ``/internal/session/*``.

The JSON shapes are the predecessor's, so operators' scripts keep working (docs/login.md). Only an
export's answer carries a secret; the log records which request exported which instance, never the bundle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from common.errors import GatewayError
from common.log import REQUEST_ID
from common.protocol import (
    AdminRequest,
    AdminResult,
    ExportSession,
    ImportSession,
    LoginCallback,
    LoginStart,
    LoginStatus,
    LoginUrl,
)
from sidecar.lingma.instance import LingmaInstance
from sidecar.login.bundle import BundleError, export_bundle, import_bundle
from sidecar.login.failure import LoginFailed
from sidecar.login.flow import generate_login_url
from sidecar.pool import Pool

__all__ = ("LoginAdmin", "forward_callback")

log = logging.getLogger("lingma_gateway.login")

CALLBACK_TIMEOUT = 30.0


def _answer(status: int, body: dict[str, Any]) -> AdminResult:
    return AdminResult(status=status, json=json.dumps(body))


def _error(status: int, message: str, instance: str | None = None) -> AdminResult:
    body: dict[str, Any] = {"ok": False, "error": message}
    if instance is not None:
        body["instance"] = instance
    return _answer(status, body)


class LoginAdmin:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def handle(self, op: AdminRequest) -> AdminResult:
        match op:
            case LoginStart():
                return self._start(op)
            case LoginStatus():
                return _answer(200, {"ok": True, "instances": [self._status(i) for i in self.pool.instances]})
            case ExportSession():
                return self._export(op)
            case ImportSession():
                return await self._import(op)
            case LoginUrl():
                return await self._login_url(op)
            case LoginCallback():
                return await self._callback(op)

    def _pick(self, wanted: str | None, *, logged_in: bool) -> LingmaInstance | AdminResult:
        if wanted:
            inst = self.pool.get(wanted)
            return inst if inst is not None else _error(404, f"unknown instance {wanted}", wanted)
        match = [i for i in self.pool.instances if (i.state == "ready") == logged_in]
        if match:
            return match[0]
        if not self.pool.instances:
            return _error(404, "there are no instances")
        return self.pool.instances[0]

    def _status(self, inst: LingmaInstance) -> dict[str, Any]:
        return {
            "instance": inst.id,
            "state": self.pool.login.state_of(inst),
            "auth": inst.auth,
            "auto_login": self.pool.login.records[inst.id].public(),
        }

    def _start(self, op: LoginStart) -> AdminResult:
        inst = self._pick(op.instance, logged_in=False)
        if isinstance(inst, AdminResult):
            return inst
        try:
            outcome = self.pool.login.start(inst, headless=False if op.show_browser else None)
        except LoginFailed as exc:
            return _error(409, exc.reason, inst.id)
        log.info("login of instance %s requested by an admin: %s", inst.id, outcome)
        body: dict[str, Any] = {"ok": True, "state": outcome, "instance": inst.id}
        if outcome == "already_logged_in":
            body["auth"] = inst.auth
        else:
            body["auto_login"] = self.pool.login.records[inst.id].public()
        return _answer(200, body)

    def _export(self, op: ExportSession) -> AdminResult:
        inst = self._pick(op.instance, logged_in=True)
        if isinstance(inst, AdminResult):
            return inst
        if inst.state != "ready":
            return _error(409, f"instance {inst.id} is not logged in ({self.pool.login.state_of(inst)})", inst.id)
        try:
            bundle = export_bundle(inst.work_dir)
        except BundleError as exc:
            return _error(409, f"instance {inst.id}: {exc}", inst.id)
        account = self.pool.accounts.get(inst.id)
        username = account.username if account else str(inst.auth.get("name") or "")
        log.warning(
            "session bundle of instance %s exported (request id %s)", inst.id, op.request_id or REQUEST_ID.get()
        )
        return _answer(
            200,
            {"instance": inst.id, "account": username, "raw_bytes": bundle.raw_bytes, "bundle_b64": bundle.bundle_b64},
        )

    async def _import(self, op: ImportSession) -> AdminResult:
        inst = self.pool.get(op.instance)
        if inst is None:
            return _error(404, f"unknown instance {op.instance}", op.instance)
        try:
            applied = import_bundle(op.bundle_b64, inst.work_dir, account=inst.id)
        except BundleError as exc:
            return _error(400, str(exc), inst.id)
        if not applied:
            return _error(409, f"instance {inst.id} already holds a login; the bundle was not applied", inst.id)
        log.info("session bundle imported into instance %s; restarting its Lingma to read it", inst.id)
        inst.recycle("a session bundle was imported")
        return _answer(200, {"ok": True, "instance": inst.id, "state": "imported"})

    async def _login_url(self, op: LoginUrl) -> AdminResult:
        inst = self._pick(op.instance, logged_in=False)
        if isinstance(inst, AdminResult):
            return inst
        if inst.state == "ready":
            return _answer(200, {"ok": True, "instance": inst.id, "state": "already_logged_in", "auth": inst.auth})
        try:
            url = await generate_login_url(inst)
        except (LoginFailed, GatewayError) as exc:
            reason = exc.reason if isinstance(exc, LoginFailed) else exc.message
            return _error(409, reason, inst.id)
        return _answer(200, {"ok": True, "instance": inst.id, "login_url": url, "http_port": inst.http_port})

    async def _callback(self, op: LoginCallback) -> AdminResult:
        """Hand a pasted callback URL to the instance's Lingma on its own loopback port."""
        inst = self.pool.get(op.instance)
        if inst is None or inst.http_port is None:
            return _error(404, f"unknown or stopped instance {op.instance}", op.instance)
        parts = urllib.parse.urlsplit(op.url.strip())
        if parts.path != "/auth/callback" or not parts.query:
            return _error(400, "that is not a Lingma callback URL (…/auth/callback?state=…)", inst.id)
        status = await forward_callback(inst.http_port, parts.query)
        inst.prober.poke()
        if status != 200:
            return _error(409, f"Lingma refused the callback (HTTP {status}); start a new login", inst.id)
        return _answer(200, {"ok": True, "instance": inst.id, "state": "callback_accepted"})


async def forward_callback(http_port: int, query: str) -> int:
    """GET Lingma's own ``/auth/callback`` on its loopback port with the page's query; the HTTP status."""
    return await asyncio.to_thread(_get_status, f"http://127.0.0.1:{http_port}/auth/callback?{query}")


def _get_status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=CALLBACK_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
