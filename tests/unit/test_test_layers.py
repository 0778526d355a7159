"""Every test module sits in one layer directory, so each layer runs alone by path and by marker."""

from __future__ import annotations

import tomllib

from tests.conftest import LAYERS, TESTS_DIR, layer_of


def test_every_test_module_lives_in_a_layer() -> None:
    stray = [str(p.relative_to(TESTS_DIR)) for p in TESTS_DIR.rglob("test_*.py") if layer_of(p) is None]
    assert not stray, f"test modules outside tests/unit, tests/integration, tests/e2e, tests/faults: {stray}"


def test_each_layer_has_a_registered_marker() -> None:
    config = tomllib.loads((TESTS_DIR.parent / "pyproject.toml").read_text())
    markers = {line.split(":", 1)[0] for line in config["tool"]["pytest"]["ini_options"]["markers"]}
    assert set(LAYERS) <= markers


def test_layer_of_reads_the_first_directory_under_tests() -> None:
    assert layer_of(TESTS_DIR / "unit" / "tools" / "test_x.py") == "unit"
    assert layer_of(TESTS_DIR / "e2e" / "test_x.py") == "e2e"
    assert layer_of(TESTS_DIR / "test_x.py") is None
    assert layer_of(TESTS_DIR / "support" / "test_x.py") is None
