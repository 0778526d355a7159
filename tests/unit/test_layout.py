"""Guards on the project's shape that the gates alone would let drift."""

from __future__ import annotations

import tomllib
from pathlib import Path

from common.settings import SETTINGS_HELP

ROOT = Path(__file__).resolve().parents[2]


def _sidecar_modules() -> set[str]:
    out = set()
    for entry in (ROOT / "sidecar").iterdir():
        if entry.name in ("__init__.py", "__main__.py", "simulator", "__pycache__"):
            continue
        if entry.suffix == ".py" or (entry / "__init__.py").exists():
            out.add(f"sidecar.{entry.stem}")
    return out


def test_simulator_contracts_cover_every_sidecar_module() -> None:
    """A new sidecar module must be listed, or the simulator could start sharing code with the client."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}
    listed_out = set(contracts["the simulator imports nothing of the project"]["forbidden_modules"])
    listed_in = set(contracts["nothing imports the simulator"]["source_modules"])
    assert _sidecar_modules() <= listed_out
    assert _sidecar_modules() <= listed_in


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name, _ in SETTINGS_HELP if f"`{name}`" not in readme]
    assert not missing, f"README lacks {missing}"
