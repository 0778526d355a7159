"""``python -m sidecar login|bundle``: logins and bundles for a data dir when no gateway runs on it.

``lingma-gateway login`` and ``lingma-gateway bundle`` hand over here when nothing answers on the socket.
A login starts only the one Lingma process it needs, runs the same flow as the gateway (the browser, or
a URL for a person and the callback pasted back), and stops it again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import urllib.parse
from pathlib import Path

from common.private_file import write_private
from common.settings import Settings
from sidecar.lingma.instance import LingmaInstance
from sidecar.login.admin import forward_callback
from sidecar.login.bundle import BundleError, export_bundle, import_bundle, is_logged_in_dir
from sidecar.login.failure import LoginFailed
from sidecar.login.flow import confirm, generate_login_url
from sidecar.pool import Pool, instance_ids

__all__ = ("run_offline",)

log = logging.getLogger("lingma_gateway.login")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lingma-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    login = sub.add_parser("login")
    login.add_argument("--instance")
    login.add_argument("--show-browser", action="store_true")
    bundle = sub.add_parser("bundle")
    actions = bundle.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export")
    export.add_argument("--instance", required=True)
    export.add_argument("--out")
    imp = actions.add_parser("import")
    imp.add_argument("file")
    imp.add_argument("--instance", required=True)
    for p in (login, export, imp):
        p.add_argument("--socket")
        p.add_argument("--data-dir")
        p.add_argument("--simulator", action="store_true")
    return parser.parse_args(argv)


def run_offline(args: argparse.Namespace, settings: Settings) -> int:
    ids = instance_ids(settings)
    wanted = args.instance or next((i for i in ids if not is_logged_in_dir(settings.work_dir / i)), ids[0])
    if wanted not in ids:
        print(f"lingma-gateway: unknown instance {wanted}; this configuration has {', '.join(ids)}", file=sys.stderr)
        return 2
    work = settings.work_dir / wanted
    try:
        if args.command == "bundle" and args.action == "export":
            bundle = export_bundle(work)
            write_private(bundle.bundle_b64, args.out)
            print(f"exported the session bundle of {wanted} ({bundle.raw_bytes} bytes)", file=sys.stderr)
            return 0
        if args.command == "bundle":
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("ascii", errors="replace")
            if not import_bundle(text, work, account=wanted):
                print(f"lingma-gateway: {wanted} already holds a login; the bundle was not applied", file=sys.stderr)
                return 1
            print(f"imported the session bundle into {wanted}", file=sys.stderr)
            return 0
    except BundleError as exc:
        print(f"lingma-gateway: {wanted}: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_login(settings, wanted, args.show_browser))


async def _login(settings: Settings, instance: str, show: bool) -> int:
    pool = Pool(settings)
    inst = pool.get(instance)
    assert inst is not None
    began = time.monotonic()
    try:
        await inst.start()
        if not await inst.wait_ready(settings.lingma_startup_timeout) and inst.state != "login_required":
            print(f"lingma-gateway: {instance} did not start ({inst.last_error})", file=sys.stderr)
            return 1
        if inst.state == "ready":
            print(f"{instance} is already logged in")
            return 0
        try:
            pool.login.start(inst, headless=False if show else None)
        except LoginFailed as exc:
            print(f"no browser login here: {exc.reason}")
            return await _manual(inst)
        return await _follow(pool, inst, began)
    finally:
        await pool.login.stop()
        await inst.stop()


async def _follow(pool: Pool, inst: LingmaInstance, began: float) -> int:
    last = ""
    while True:
        rec = pool.login.records[inst.id]
        line = f"attempt {rec.attempts} of {rec.max_attempts}: {rec.step}"
        if line != last:
            print(f"[{time.monotonic() - began:5.1f}s] {inst.id}: {line}", flush=True)
            last = line
        if rec.state == "succeeded" or inst.state == "ready":
            print(f"[{time.monotonic() - began:5.1f}s] {inst.id} is logged in")
            return 0
        if rec.state == "failed":
            print(f"[{time.monotonic() - began:5.1f}s] {inst.id}: login failed: {rec.last_error}")
            return 1
        await asyncio.sleep(0.3)


async def _manual(inst: LingmaInstance) -> int:
    url = await generate_login_url(inst)
    port = inst.http_port
    print(
        f"Open this URL in a browser and sign in:\n\n  {url}\n\n"
        f"The page ends on http://127.0.0.1:{port}/auth/callback?..., which must reach this host's loopback.\n"
        f"From another machine, forward the port first:  ssh -L {port}:127.0.0.1:{port} <this-host>\n"
        "If the browser cannot reach it, paste the callback URL from its address bar here and press Enter:",
        flush=True,
    )
    pasted = (await asyncio.to_thread(sys.stdin.readline)).strip()
    if pasted and port is not None:
        query = urllib.parse.urlsplit(pasted).query
        status = await forward_callback(port, query)
        if status != 200:
            print(f"lingma-gateway: Lingma refused the callback (HTTP {status}); run the login again", file=sys.stderr)
            return 1
    try:
        await confirm(inst, timeout=60)
    except LoginFailed as exc:
        print(f"lingma-gateway: {exc.reason}", file=sys.stderr)
        return 1
    print(f"{inst.id} is logged in")
    return 0
