"""Keeps bench/ from rotting: a tiny ``--quick`` pass in a subprocess, checked for shape, numbers and cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _positive(summary: dict[str, Any]) -> None:
    assert summary["errors"] == 0
    for key in ("rps", "p50_ms", "p99_ms"):
        assert summary[key] > 0, key
    assert summary["p99_ms"] >= summary["p50_ms"]


@pytest.mark.timeout(90)
def test_quick_benchmark_runs_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--requests", "50", "--runs", "1", "--concurrency", "1,4"]
    done = subprocess.run([*argv, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "gateway req/s" in done.stdout

    data = json.loads(out.read_text())
    assert data["config"]["requests"] == 50
    assert data["config"]["concurrency"] == [1, 4]
    rows = data["results"]
    assert {(row["scenario"], row["concurrency"]) for row in rows} == {
        (scenario, conc) for scenario in ("non_stream", "stream") for conc in (1, 4)
    }
    for row in rows:
        _positive(row["gateway"])
        _positive(row["baseline"])
        assert all(row["ratio"][key] > 0 for key in ("rps", "p50", "p99"))
        assert 0 < row["cpu"]["simulator_share"] < 1
        assert row["cpu"]["ms_per_request"]["simulator"] > 0
        assert len(row["runs"]) == 1
        assert row["runs"][0]["gateway"]["requests"] == 50

    processes = data["processes"]
    pids = [*processes["gateway"].values(), processes["baseline_simulator"]]
    assert not [pid for pid in pids if _alive(pid)], "the benchmark left processes running"


@pytest.mark.timeout(240)
def test_extended_phases_run_small_and_report_against_their_baselines(tmp_path: Path) -> None:
    """Every extended phase at a tiny size: the figures and their same-run baselines are all there."""
    out = tmp_path / "extended.json"
    argv = [sys.executable, "-m", "bench", "--only-extended", "--chunk-turns", "6", "--agent-turns", "3"]
    argv += ["--streams", "20", "--out", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=230, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "RLIMIT_NOFILE " in done.stdout and "needed for the open streams" in done.stdout

    ext = json.loads(out.read_text())["extended"]
    assert ext["nofile"]["soft"] >= ext["nofile"]["needed"]
    assert ext["startup"]["to_first_completion_s"] > 0 and ext["startup"]["ratio"] > 0
    assert ext["agent"]["first_over_second_sidecar"] > 0
    streams = ext["streams"]
    assert streams["errors"] == 0 and streams["baseline_errors"] == 0, streams["error_samples"]
    # Heartbeats every second keep each stream's gaps near that, through the reply's two 2.5 s pauses.
    assert 0 < streams["worst_gap_ms"] < streams["baseline_worst_gap_ms"]
    assert streams["ttfb_max_ms"] >= streams["ttfb_p50_ms"] > 0
    assert streams["rss_ratio"] > 0 and streams["ttfb_max_ratio"] > 0
    # The floor: three bare programs measured in the same run, each figure read as a ratio to its shape's.
    chunks = ext["chunks"]
    floor = chunks["floor"]
    assert floor["relay_handler_us_per_message"] > 0 and floor["relay_sidecar_us_per_message"] > 0
    assert floor["route_ms_per_request"] > 0
    http = chunks["processes"]["http"]
    assert chunks["floor_ratio"]["http_per_chunk"] == round(
        http["us_per_chunk"] / floor["relay_handler_us_per_message"], 2
    )
    assert chunks["floor_ratio"]["http_per_turn"] == round(http["ms_per_turn"] / floor["route_ms_per_request"], 2)
    sidecar = chunks["processes"]["sidecar"]
    assert chunks["floor_ratio"]["sidecar_per_chunk"] == round(
        sidecar["us_per_chunk"] / floor["relay_sidecar_us_per_message"], 2
    )
    assert "floor on this machine" in done.stdout


def test_each_floor_program_runs_alone_and_prints_one_figure() -> None:
    """``python -m bench.floor`` as the benchmark runs it: a positive figure, and a clear refusal of a wrong call."""
    for args in (["relay", "handler", "300"], ["relay", "sidecar", "300"], ["route", "100"]):
        done = subprocess.run(
            [sys.executable, "-m", "bench.floor", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-2000:]
        value = json.loads(done.stdout)["value"]
        # A message costs at least a read and a write (µs); a request through Litestar is well under 100 ms.
        assert (1.0 < value < 10_000) if args[0] == "relay" else (0.01 < value < 100), (args, value)
    bad = subprocess.run([sys.executable, "-m", "bench.floor", "relay", "nowhere", "3"], cwd=ROOT, capture_output=True)
    assert bad.returncode == 2 and b"usage" in bad.stderr
