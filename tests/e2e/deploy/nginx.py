"""A real nginx in front of cells, configured from the Ingress's own annotations (the same hash key, body
size, read timeout and buffering), run in the foreground with every path under a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[3]
INGRESS = ROOT / "infra" / "k8s" / "base" / "ingress.yaml"
NGINX = "/usr/sbin/nginx"
PREFIX = "nginx.ingress.kubernetes.io/"


def ingress_annotations() -> dict[str, str]:
    doc: dict[str, Any] = yaml.safe_load(INGRESS.read_text())
    return {k.removeprefix(PREFIX): v for k, v in doc["metadata"]["annotations"].items()}


def need_nginx() -> None:
    if not os.access(NGINX, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{NGINX} is missing: scripts/system-deps installs it")
        pytest.skip(f"{NGINX} is missing: run scripts/system-deps")


def render_config(root: Path, port: int, upstreams: list[int], fail_timeout: float) -> str:
    notes = ingress_annotations()
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout={fail_timeout:g}s;" for p in upstreams)
    user = "user root;" if os.geteuid() == 0 else ""
    buffering = notes["proxy-buffering"]
    return f"""
{user}
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 512; }}
http {{
  access_log {root}/access.log;
  client_body_temp_path {root}/client_body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream cells {{
    hash "{notes["upstream-hash-by"]}" consistent;
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size {notes["proxy-body-size"]};
    location / {{
      proxy_pass http://cells;
      proxy_http_version {notes["proxy-http-version"]};
      proxy_set_header Connection "";
      proxy_read_timeout {notes["proxy-read-timeout"]}s;
      proxy_send_timeout {notes["proxy-send-timeout"]}s;
      proxy_buffering {buffering};
      proxy_request_buffering {notes["proxy-request-buffering"]};
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""


class Nginx:
    def __init__(self, root: Path, upstreams: list[int], fail_timeout: float) -> None:
        need_nginx()
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "nginx.conf"
        self.conf.write_text(render_config(root, self.port, upstreams, fail_timeout))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        cmd = [NGINX, "-p", str(self.root), "-c", str(self.conf), "-e", str(self.root / "error.log")]
        check = subprocess.run([*cmd, "-t"], capture_output=True, text=True, timeout=30, check=False)
        assert check.returncode == 0, check.stderr
        with (self.root / "stderr.log").open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        wait_for(self._listening, 20, what="nginx to listen")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited: {(self.root / 'error.log').read_text()[-2000:]}")
        try:
            httpx.get(self.url + "/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)
