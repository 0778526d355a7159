"""``lingma-gateway login`` and ``lingma-gateway bundle``: a running gateway's logins and bundles, from a terminal.

With a gateway running, these talk to its sidecar over the socket (owning the socket is the credential).
Without one, they hand over to the sidecar's own entry point (``python -m sidecar login|bundle``), which
works on the data dir directly; the handlers never import the sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from common.client import SidecarClient, socket_accepts
from common.errors import GatewayError
from common.private_file import write_private
from common.protocol import AdminRequest, ExportSession, ImportSession, LoginCallback, LoginStart, LoginStatus, LoginUrl
from common.settings import Settings

__all__ = ("add_commands", "run_command")

POLL = 0.5


def add_commands(sub: Any) -> None:
    login = sub.add_parser("login", help="log an instance in (a running gateway's, or a data dir's)")
    login.add_argument("--instance", help="instance id (default: the first logged-out one)")
    login.add_argument("--show-browser", action="store_true", help="show the login browser's window")
    bundle = sub.add_parser("bundle", help="move a login between machines as a session bundle")
    actions = bundle.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write an instance's session bundle (base64 tar.gz)")
    export.add_argument("--instance", required=True)
    export.add_argument("--out", help="file to write (mode 0600); default: standard output")
    imp = actions.add_parser("import", help="fill a logged-out instance from a bundle file")
    imp.add_argument("file", help="bundle file (base64 tar.gz), or - for standard input")
    imp.add_argument("--instance", required=True)
    for p in (login, export, imp):
        p.add_argument("--socket", help="sidecar socket (GATEWAY_SOCKET)")
        p.add_argument("--data-dir", help="data directory (GATEWAY_DATA_DIR)")


def run_command(args: argparse.Namespace, argv: list[str], settings: Settings) -> int:
    """Run against the gateway on the socket, else hand over to the sidecar's entry point (no return)."""
    if not socket_accepts(settings.socket_path):
        os.execv(sys.executable, [sys.executable, "-m", "sidecar", *argv])
    client = SidecarClient(settings.socket_path)
    try:
        if args.command == "login":
            return asyncio.run(_login(client, args.instance, args.show_browser, sys.stdin, sys.stdout))
        if args.action == "export":
            return asyncio.run(_export(client, args.instance, args.out))
        return asyncio.run(_import(client, args.instance, args.file))
    except GatewayError as exc:
        print(f"lingma-gateway: {exc.message}", file=sys.stderr)
        return 1


async def _call(client: SidecarClient, op: AdminRequest) -> tuple[int, dict[str, Any]]:
    result = await client.admin(op)
    return result.status, json.loads(result.json)


async def _login(client: SidecarClient, instance: str | None, show: bool, stdin: TextIO, out: TextIO) -> int:
    status, body = await _call(client, LoginStart(instance=instance, show_browser=show))
    if status == 404:
        print(f"lingma-gateway: {body.get('error')}", file=sys.stderr)
        return 1
    if status == 409:
        print(f"no browser login here: {body.get('error')}", file=out)
        return await _manual(client, body.get("instance") or instance, stdin, out)
    target = body["instance"]
    if body["state"] == "already_logged_in":
        print(f"{target} is already logged in", file=out)
        return 0
    return await _follow(client, target, out)


async def _follow(client: SidecarClient, instance: str, out: TextIO) -> int:
    began, last = time.monotonic(), ""
    while True:
        _status, body = await _call(client, LoginStatus())
        item = next(i for i in body["instances"] if i["instance"] == instance)
        record = item["auto_login"]
        line = f"attempt {record['attempts']} of {record['max_attempts']}: {record['step']}"
        elapsed = time.monotonic() - began
        if line != last:
            print(f"[{elapsed:5.1f}s] {instance}: {line}", file=out, flush=True)
            last = line
        if item["state"] == "ready":
            print(f"[{elapsed:5.1f}s] {instance} is logged in", file=out)
            return 0
        if record["state"] == "failed":
            print(f"[{elapsed:5.1f}s] {instance}: login failed: {record['last_error']}", file=out)
            return 1
        await asyncio.sleep(POLL)


async def _manual(client: SidecarClient, instance: str | None, stdin: TextIO, out: TextIO) -> int:
    status, body = await _call(client, LoginUrl(instance=instance))
    if status != 200:
        print(f"lingma-gateway: {body.get('error')}", file=sys.stderr)
        return 1
    target = body["instance"]
    if body.get("state") == "already_logged_in":
        print(f"{target} is already logged in", file=out)
        return 0
    port = body["http_port"]
    print(
        f"Open this URL in a browser and sign in:\n\n  {body['login_url']}\n\n"
        f"The page ends on http://127.0.0.1:{port}/auth/callback?..., which must reach the gateway host's\n"
        f"loopback. From another machine, forward the port first:  ssh -L {port}:127.0.0.1:{port} <gateway-host>\n"
        "If the browser cannot reach it, paste the callback URL from its address bar here and press Enter:",
        file=out,
        flush=True,
    )
    pasted = await asyncio.to_thread(stdin.readline)
    if pasted.strip():
        status, body = await _call(client, LoginCallback(instance=target, url=pasted.strip()))
        if status != 200:
            print(f"lingma-gateway: {body.get('error')}", file=sys.stderr)
            return 1
    return await _wait_logged_in(client, target, out)


async def _wait_logged_in(client: SidecarClient, instance: str, out: TextIO, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _status, body = await _call(client, LoginStatus())
        if any(i["instance"] == instance and i["state"] == "ready" for i in body["instances"]):
            print(f"{instance} is logged in", file=out)
            return 0
        await asyncio.sleep(POLL)
    print(f"lingma-gateway: {instance} is still not logged in", file=sys.stderr)
    return 1


async def _export(client: SidecarClient, instance: str, out: str | None) -> int:
    status, body = await _call(client, ExportSession(instance=instance))
    if status != 200:
        print(f"lingma-gateway: {body.get('error')}", file=sys.stderr)
        return 1
    write_private(body["bundle_b64"], out)
    print(f"exported the session bundle of {instance} ({body['raw_bytes']} bytes)", file=sys.stderr)
    return 0


async def _import(client: SidecarClient, instance: str, source: str) -> int:
    bundle = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="ascii", errors="replace")
    status, body = await _call(client, ImportSession(instance=instance, bundle_b64=bundle))
    if status != 200:
        print(f"lingma-gateway: {body.get('error')}", file=sys.stderr)
        return 1
    print(f"imported; {instance} restarts its Lingma to read the login", file=sys.stderr)
    return 0
