"""``serve`` hands its sidecar child the paths it resolved as flags, never by writing its own environment, and
never puts a credential on a command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from common.client import sidecar_identity
from tests.conftest import free_port, stop_process, wait_for

KEY = "sk-serve-flags-0123456789"
ADMIN = "adm-serve-flags-9876543210"


def _proc_text(pid: int, name: str) -> list[str]:
    return (Path(f"/proc/{pid}") / name).read_bytes().decode(errors="replace").split("\0")


def test_serve_flags_reach_the_sidecar_as_flags_and_secrets_stay_off_its_command_line(short_dir: Path) -> None:
    data = short_dir / "given-data"
    sock = short_dir / "given.sock"
    scenario = short_dir / "scenario.json"
    scenario.write_text(json.dumps({"turns": [{"match": "which scenario", "reply": [{"text": "the flagged one"}]}]}))
    home = short_dir / "home"  # where the data dir and socket would default to, were the flags lost
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LINGMA_", "XDG_")) and k != "API_KEYS"}
    env.update(HOME=str(home), API_KEYS=KEY, ADMIN_TOKEN=ADMIN, LINGMA_SOCKET_PORT=str(20000 + free_port() % 9000))
    port = free_port()
    log = short_dir / "serve.log"
    args = ["serve", "--simulator", "--port", str(port), "--data-dir", str(data), "--socket", str(sock)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "handlers", *args, "--scenario", str(scenario)], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, 0.1, what="serve to be ready")
        ident = sidecar_identity(sock)
        assert ident is not None and ident.pid and ident.data_dir == str(data.resolve())
        cmdline = _proc_text(ident.pid, "cmdline")
        environ = dict(entry.partition("=")[::2] for entry in _proc_text(ident.pid, "environ") if entry)
        assert cmdline[cmdline.index("--data-dir") + 1] == str(data.resolve())
        assert cmdline[cmdline.index("--socket") + 1] == str(sock)
        assert cmdline[cmdline.index("--scenario") + 1] == str(scenario.resolve())
        assert not {"GATEWAY_DATA_DIR", "GATEWAY_SOCKET", "LINGMA_SIM_SCENARIO"} & set(environ), (
            "the flags reached the sidecar through an environment written on the way"
        )
        for secret in (KEY, ADMIN):
            assert not any(secret in arg for arg in cmdline), "a credential is visible in ps"
            assert secret not in environ.values(), "the sidecar checks no keys: it must not hold them"
        assert (data / "instances" / "inst-0").is_dir() and not home.exists()
        r = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "which scenario?"}]},
            headers={"authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "the flagged one"
    finally:
        stop_process(proc)
