"""A header flood against a running gateway: stalled and endless-header connections, /healthz probed meanwhile.

Half the flooding connections open and send half a request line, then nothing; the other half send
``X-A: `` followed by 64 KiB pieces until the server answers or closes (at most ``cap_bytes`` each). /healthz is
probed on a fresh connection every ``probe_interval`` seconds, first idle, then during the flood; the result is
the latency during the flood as a ratio against idle, and what became of each flooding connection.

``python -m bench.flood`` starts its own bundled gateway over the simulator (with the default HTTP caps);
``--url http://127.0.0.1:8787`` floods a gateway that is already running instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ("FloodResult", "flood")

PIECE = b"a" * 65536


@dataclass
class FloodResult:
    idle_ms: list[float]
    flood_ms: list[float]
    outcomes: Counter[str] = field(default_factory=Counter)
    probe_failures: int = 0
    seconds_to_clear: float | None = None

    def summary(self) -> dict[str, object]:
        idle = statistics.median(self.idle_ms) if self.idle_ms else 0.0
        during = statistics.median(self.flood_ms) if self.flood_ms else 0.0
        return {
            "idle_p50_ms": round(idle, 2),
            "idle_max_ms": round(max(self.idle_ms, default=0.0), 2),
            "flood_p50_ms": round(during, 2),
            "flood_max_ms": round(max(self.flood_ms, default=0.0), 2),
            "p50_ratio": round(during / idle, 2) if idle else None,
            "max_ratio": round(max(self.flood_ms, default=0.0) / max(self.idle_ms), 2) if self.idle_ms else None,
            "probes": len(self.flood_ms),
            "probe_failures": self.probe_failures,
            "flood_outcomes": dict(self.outcomes),
            "seconds_to_clear": None if self.seconds_to_clear is None else round(self.seconds_to_clear, 2),
        }


async def _probe(host: str, port: int, timeout: float) -> float | None:
    """Milliseconds for one ``GET /healthz`` on a fresh connection, ``None`` when it failed or timed out."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return None
    if not data.startswith(b"HTTP/1.1 200"):
        return None
    return (time.perf_counter() - started) * 1000


async def _outcome(reader: asyncio.StreamReader) -> str:
    try:
        head = await reader.read(64)
    except OSError:
        return "closed"
    if not head:
        return "closed"
    parts = head.split(b" ", 2)
    return parts[1].decode(errors="replace") if len(parts) > 1 else "garbage"


async def _stalled(host: str, port: int, until: float) -> str:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return "refused"
    try:
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        async with asyncio.timeout(max(0.1, until - time.monotonic())):
            return await _outcome(reader)
    except TimeoutError:
        return "open"
    finally:
        writer.close()


async def _endless(host: str, port: int, until: float, cap_bytes: int) -> str:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return "refused"
    answer = asyncio.ensure_future(_outcome(reader))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ")
        sent = 0
        while sent < cap_bytes and not answer.done() and time.monotonic() < until:
            writer.write(PIECE)
            sent += len(PIECE)
            await writer.drain()
        async with asyncio.timeout(max(0.1, until - time.monotonic())):
            return await answer
    except (OSError, TimeoutError):
        if answer.done() and not answer.cancelled():
            return answer.result()
        return "closed" if writer.is_closing() or reader.at_eof() else "open"
    finally:
        answer.cancel()
        writer.close()


async def flood(
    url: str,
    *,
    connections: int = 300,
    duration: float = 6.0,
    idle_probes: int = 20,
    probe_interval: float = 0.1,
    probe_timeout: float = 5.0,
    cap_bytes: int = 4 * 1024 * 1024,
) -> FloodResult:
    """Probe idle, then flood for ``duration`` seconds while probing; every flooding connection ends by then."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    for _ in range(5):  # warm-up: the first connections of a fresh process are slower
        await _probe(host, port, probe_timeout)
    idle: list[float] = []
    for _ in range(idle_probes):
        ms = await _probe(host, port, probe_timeout)
        if ms is not None:
            idle.append(ms)
        await asyncio.sleep(probe_interval)
    result = FloodResult(idle_ms=idle, flood_ms=[])
    started = time.monotonic()
    until = started + duration
    half = connections // 2
    tasks = [asyncio.ensure_future(_stalled(host, port, until)) for _ in range(half)]
    tasks += [asyncio.ensure_future(_endless(host, port, until, cap_bytes)) for _ in range(connections - half)]
    await asyncio.sleep(0.2)  # let the flood land before the first probe
    while time.monotonic() < until and not all(t.done() for t in tasks):
        ms = await _probe(host, port, probe_timeout)
        if ms is None:
            result.probe_failures += 1
        else:
            result.flood_ms.append(ms)
        await asyncio.sleep(probe_interval)
    for outcome in await asyncio.gather(*tasks):
        result.outcomes[outcome] += 1
    if "open" not in result.outcomes:
        result.seconds_to_clear = time.monotonic() - started
    return result


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def _own_gateway() -> Iterator[str]:
    """A bundled gateway over the simulator in a temporary directory, stopped (with its children) on exit."""
    root = Path(tempfile.mkdtemp(prefix="lgw-flood-", dir="/tmp"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "handlers", "serve", "--simulator", "--port", str(port)]
    cmd += ["--data-dir", str(root / "data"), "--socket", str(root / "s.sock")]
    env = {**os.environ, "API_KEYS": "bench-key", "LOG_LEVEL": "ERROR"}
    with (root / "gateway.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not start; see {root / 'gateway.log'}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__)
    parser.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8787 (default: start one)")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of flood (the default deadlines are 10s)")
    parser.add_argument("--cap-mib", type=float, default=4.0, help="bytes each endless header sends at most")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt), contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(_own_gateway())
        result = asyncio.run(
            flood(url, connections=args.connections, duration=args.duration, cap_bytes=int(args.cap_mib * 1024 * 1024))
        )
        print(json.dumps(result.summary(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
