"""Checks of a running gateway, through its sidecar socket, and of the instances' login state without one."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import platform
import subprocess

from common.client import SidecarClient
from common.errors import GatewayError
from common.protocol import PROTOCOL_MAJOR, PROTOCOL_MINOR
from common.settings import Settings
from common.stats import InstanceState, InstanceStats, StatsReport
from sidecar.doctor.local import RUN_TIMEOUT_S, binary_path, lingma_version
from sidecar.doctor.report import Check
from sidecar.pool import instance_ids

__all__ = ("check_logins", "check_versions", "sidecar_stats")

_WAITING = frozenset(
    {InstanceState.STARTING, InstanceState.RESTARTING, InstanceState.LOGGING_IN, InstanceState.COOLING_DOWN}
)
SIGN_IN = (
    "sign that instance in to Lingma (its work dir is {work}), or give it an account in LINGMA_ACCOUNTS for auto-login"
)


async def _stats(settings: Settings) -> StatsReport:
    client = SidecarClient(settings.socket_path)
    try:
        return await client.stats()
    finally:
        await client.aclose()


def sidecar_stats(settings: Settings) -> tuple[StatsReport | None, str]:
    """The running sidecar's stats, or None and why it could not be read."""
    try:
        return asyncio.run(_stats(settings)), ""
    except GatewayError as exc:
        return None, str(exc)


def _instance_check(settings: Settings, inst: InstanceStats) -> Check:
    iid = inst.id
    state = inst.state
    name = f"login {iid}"
    error = f": {inst.last_error}" if inst.last_error else ""
    if state == InstanceState.READY:
        return Check(name, "ok", "logged in and ready")
    if state in _WAITING:
        return Check(name, "warn", f"not serving yet ({state}){error}", "wait, then run doctor again")
    if state in (InstanceState.LOGIN_REQUIRED, InstanceState.LOGIN_FAILED):
        return Check(name, "fail", f"logged out ({state}){error}", SIGN_IN.format(work=settings.work_dir / iid))
    return Check(name, "fail", f"cannot serve ({state}){error}", "see the sidecar's log; check the lingma binary")


def _status_without_gateway(settings: Settings, iid: str) -> Check:
    """Ask ``Lingma status -o json`` about an instance's work dir (an optional subcommand of the binary)."""
    name = f"login {iid}"
    work = settings.work_dir / iid
    if not work.is_dir():
        return Check(name, "skip", f"no work dir yet ({work}); the gateway creates it at start")
    binary = binary_path(settings)
    if binary is None:
        return Check(name, "skip", "unknown: no Lingma binary to ask")
    try:
        done = subprocess.run(
            [binary, "status", "-o", "json", "--workDir", str(work)],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        report = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return Check(name, "skip", "unknown: the binary did not report it and no gateway runs")
    if isinstance(report, dict) and report.get("logged_in"):
        return Check(name, "ok", "logged in (the work dir holds a session)")
    return Check(name, "fail", "logged out", SIGN_IN.format(work=work))


def check_logins(settings: Settings, stats: StatsReport | None) -> list[Check]:
    if stats is not None:
        instances = stats.pool.instances
        if not instances:
            return [Check("login", "fail", "the running sidecar has no instances", "check INSTANCE_COUNT")]
        return [_instance_check(settings, inst) for inst in instances]
    return [_status_without_gateway(settings, iid) for iid in instance_ids(settings)]


def check_versions(settings: Settings, stats: StatsReport | None, sidecar_error: str) -> Check:
    try:
        gateway = importlib.metadata.version("lingma-gateway")
    except importlib.metadata.PackageNotFoundError:
        gateway = "not installed"
    parts = [f"lingma-gateway {gateway}", f"Python {platform.python_version()}"]
    parts.append(f"sidecar protocol {PROTOCOL_MAJOR}.{PROTOCOL_MINOR}")
    binary = binary_path(settings)
    if binary is not None:
        runs, said = lingma_version(binary)
        parts.append(f"Lingma {said}" if runs else "Lingma unknown")
    if "protocol" in sidecar_error and "incompatible" in sidecar_error:
        return Check(
            "versions",
            "fail",
            ", ".join(parts) + "; the running sidecar speaks another protocol",
            "run the same lingma-gateway version for the sidecar and the routes",
        )
    if stats is not None:
        parts.append("a running sidecar answers")
    return Check("versions", "ok", ", ".join(parts))
