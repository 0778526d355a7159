"""Start the two things compared: a bare simulator (the baseline) and the gateway over its own simulator.

Both simulators get the same scenario and environment, so the only difference measured is the
gateway. The gateway runs bundled (``serve``) when every route package imports, else split
(``sidecar`` + ``handler openai_chat,models``).
"""

from __future__ import annotations

import functools
import http.client
import json
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import cmdline, descendants
from bench.procs import Child, Processes, StartupError, wait_until

__all__ = (
    "Gateway",
    "Simulator",
    "bundled_available",
    "free_port",
    "sidecar_pid",
    "simulator_pid",
    "start_gateway",
    "start_simulator",
)

READY_TIMEOUT_S = 60.0
_SIM_MARKERS = ("lingma-sim", "sidecar.simulator")


@dataclass(frozen=True)
class Simulator:
    url: str
    pid: int


@dataclass(frozen=True)
class Gateway:
    mode: str
    port: int
    pids: dict[str, int]
    """Role -> pid: ``http`` (serve or handler), ``sidecar`` and ``simulator``."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _all_open(*ports: int) -> bool:
    return all(_tcp_open(port) for port in ports)


def _unix_open(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(0.5)
        return s.connect_ex(str(path)) == 0


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        body = response.read()
    except OSError:
        return False
    finally:
        conn.close()
    return response.status == 200 and json.loads(body).get("status") == "ready"


def _bin(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def sim_command() -> list[str]:
    found = _bin("lingma-sim")
    return [found] if found else [sys.executable, "-m", "sidecar.simulator"]


def gateway_command() -> list[str]:
    found = _bin("lingma-gateway")
    return [found] if found else [sys.executable, "-c", "import sys; from handlers.cli import main; sys.exit(main())"]


def bundled_available() -> bool:
    """Whether ``serve`` can start: it imports every route package."""
    probe = "import importlib, handlers.app as a; [importlib.import_module('handlers.' + r) for r in a.ROUTES]"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120, check=False)
    return done.returncode == 0


def start_simulator(procs: Processes, work_dir: Path, env: dict[str, str]) -> Simulator:
    """A simulator on free ports; a port taken between the check and the bind means another try."""
    last = ""
    for attempt in range(5):
        ws_port, http_port = free_port(), free_port()
        argv = [*sim_command(), "start", f"--workDir={work_dir}", f"--socketPort={ws_port}", f"--httpPort={http_port}"]
        child = procs.spawn(f"baseline-sim-{attempt}", argv, env)
        try:
            wait_until(functools.partial(_all_open, ws_port, http_port), child, READY_TIMEOUT_S, "baseline simulator")
        except StartupError as exc:
            last = str(exc)
            continue
        return Simulator(f"ws://127.0.0.1:{ws_port}/", child.pid)
    raise StartupError(last)


def simulator_pid(work_dir: Path, root: int) -> int:
    """From the instance pidfile (JSON or a first-line pid), else the descendant that runs the simulator."""
    below = descendants(root)
    pidfile = work_dir / "inst-0" / "lingma.pid"
    try:
        text = pidfile.read_text().strip()
        pid = int(json.loads(text)["pid"]) if text.startswith("{") else int(text.splitlines()[0])
    except (OSError, ValueError, KeyError, IndexError):
        pid = 0
    if pid in below:
        return pid
    for pid in below:
        if any(marker in cmdline(pid) for marker in _SIM_MARKERS):
            return pid
    raise StartupError("cannot find the gateway's simulator process")


def sidecar_pid(root: int, sim: int) -> int:
    for pid in descendants(root):
        if pid != sim and "sidecar" in cmdline(pid) and not any(m in cmdline(pid) for m in _SIM_MARKERS):
            return pid
    raise StartupError("cannot find the sidecar process")


def start_gateway(procs: Processes, data_dir: Path, sock: Path, env: dict[str, str], *, bundled: bool) -> Gateway:
    """``env`` may set ``LINGMA_WORK_DIR``; the instance pidfile is found there, else under the data dir."""
    work_dir = Path(env["LINGMA_WORK_DIR"]) if env.get("LINGMA_WORK_DIR") else data_dir / "instances"
    port = free_port()
    base = gateway_command()
    common = ["--data-dir", str(data_dir), "--socket", str(sock)]
    if bundled:
        child = procs.spawn("gateway-serve", [*base, "serve", "--simulator", *common, "--port", str(port)], env)
        wait_until(lambda: _ready(port), child, READY_TIMEOUT_S, "gateway")
        sim = simulator_pid(work_dir, child.pid)
        pids = {"http": child.pid, "sidecar": sidecar_pid(child.pid, sim), "simulator": sim}
    else:
        sidecar: Child = procs.spawn("gateway-sidecar", [*base, "sidecar", "--simulator", *common], env)
        wait_until(lambda: _unix_open(sock), sidecar, READY_TIMEOUT_S, "sidecar socket")
        argv = [*base, "handler", "openai_chat,models", "--port", str(port), "--socket", str(sock)]
        child = procs.spawn("gateway-handler", argv, env)
        wait_until(lambda: _ready(port), child, READY_TIMEOUT_S, "gateway handler")
        pids = {"http": child.pid, "sidecar": sidecar.pid, "simulator": simulator_pid(work_dir, sidecar.pid)}
    procs.remember_descendants()
    return Gateway("serve" if bundled else "split", port, pids)
