"""``python -m build`` makes a wheel that installs into a new venv, runs, and carries its license and assets."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[3]
VERSION = importlib.metadata.version("lingma-gateway")


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Path, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="lgw-wheel-", dir="/tmp"))
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "BuildBackendWarning" not in done.stdout + done.stderr
    (wheel,) = (tmp / "dist").glob("lingma_gateway-*.whl")
    venv = tmp / "venv"
    uv = [str(ROOT / "scripts" / "uv")]
    subprocess.run([*uv, "venv", "--quiet", str(venv)], check=True, timeout=120)
    subprocess.run(
        [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), f"lingma-gateway[sidecar] @ {wheel.as_uri()}"],
        check=True, timeout=600,
    )  # fmt: skip
    yield wheel, venv
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(900)
def test_the_wheel_carries_pep639_metadata_and_the_docs_assets(built: tuple[Path, Path]) -> None:
    wheel, _venv = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"):
        assert f"handlers/docs/static/swagger-ui/{asset}" in names
    assert not any(n.startswith("tests/") for n in names)


@pytest.mark.timeout(300)
def test_the_installed_wheel_runs(built: tuple[Path, Path]) -> None:
    _wheel, venv = built
    out = subprocess.run(
        [str(venv / "bin" / "lingma-gateway"), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"lingma-gateway {VERSION}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LINGMA_", "API_KEYS", "ADMIN_"))}
    data = venv.parent / "data"
    cwd = venv.parent  # not the checkout: the installed package must stand on its own
    proc = subprocess.Popen(
        [str(venv / "bin" / "lingma-gateway"), "serve", "--simulator", "--port", str(port), "--data-dir", str(data),
         "--socket", str(venv.parent / "s.sock")],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, "the installed gateway exited"
            try:
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, 0.1, what="the installed gateway")
        assert httpx.get(url + "/healthz").json()["version"] == VERSION
        asset = httpx.get(url + "/docs/assets/swagger-ui/swagger-ui-bundle.js")
        assert asset.status_code == 200 and len(asset.content) > 1_000_000
        assert "Apache License" in httpx.get(url + "/docs/assets/swagger-ui/LICENSE").text
    finally:
        stop_process(proc)
