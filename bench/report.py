"""Fold the runs of each measurement into medians and ratios, print the table, write the JSON."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ("aggregate", "nofile_text", "render_cpu", "render_extended", "render_table", "write_json")

Row = dict[str, Any]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def aggregate(scenario: str, concurrency: int, runs: list[Row]) -> Row:
    """Medians over runs; ratios are the median of each run's gateway/baseline pair (measured back to back)."""
    gw = [run["gateway"] for run in runs]
    base = [run["baseline"] for run in runs]
    cpu = [run["cpu"] for run in runs]

    def med(rows: list[Row], key: str) -> float:
        return _median([float(row[key]) for row in rows])

    def paired(key: str) -> float:
        return round(statistics.median(_ratio(g[key], b[key]) for g, b in zip(gw, base, strict=True)), 3)

    processes = sorted({name for c in cpu for name in c["ms_per_request"]})
    return {
        "scenario": scenario,
        "concurrency": concurrency,
        "gateway": {key: med(gw, key) for key in ("rps", "p50_ms", "p99_ms")}
        | {"errors": sum(g["errors"] for g in gw)},
        "baseline": {key: med(base, key) for key in ("rps", "p50_ms", "p99_ms")}
        | {"errors": sum(b["errors"] for b in base)},
        "ratio": {"rps": paired("rps"), "p50": paired("p50_ms"), "p99": paired("p99_ms")},
        "cpu": {
            "simulator_share": _median([c["simulator_share"] for c in cpu]),
            "other_cores": _median([c["other_cores"] for c in cpu]),
            "baseline_other_cores": _median([c["baseline_other_cores"] for c in cpu]),
            "ms_per_request": {
                name: _median([c["ms_per_request"][name] for c in cpu if name in c["ms_per_request"]])
                for name in processes
            },
            "baseline_ms_per_request": {
                name: _median([c["baseline_ms_per_request"][name] for c in cpu])
                for name in sorted({n for c in cpu for n in c["baseline_ms_per_request"]})
            },
        },
        "runs": runs,
    }


_COLUMNS = (
    ("scenario", 10),
    ("conc", 4),
    ("gateway req/s", 13),
    ("baseline req/s", 14),
    ("ratio", 6),
    ("p50 ms", 7),
    ("p99 ms", 7),
    ("baseline p50/p99", 16),
    ("p50x", 5),
    ("p99x", 5),
    ("sim CPU", 7),
)


def render_table(rows: list[Row]) -> str:
    lines = [" | ".join(name.rjust(width) for name, width in _COLUMNS)]
    lines.append("-+-".join("-" * width for _, width in _COLUMNS))
    for row in rows:
        g, b, r = row["gateway"], row["baseline"], row["ratio"]
        cells = (
            row["scenario"],
            str(row["concurrency"]),
            f"{g['rps']:.0f}",
            f"{b['rps']:.0f}",
            f"{r['rps']:.2f}",
            f"{g['p50_ms']:.2f}",
            f"{g['p99_ms']:.2f}",
            f"{b['p50_ms']:.2f}/{b['p99_ms']:.2f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{row['cpu']['simulator_share'] * 100:.0f}%",
        )
        lines.append(" | ".join(cell.rjust(width) for cell, (_, width) in zip(cells, _COLUMNS, strict=True)))
    return "\n".join(lines)


def render_cpu(rows: list[Row]) -> str:
    """CPU milliseconds per request by process: where the time goes."""
    out = ["CPU ms per request (gateway run | baseline run), and cores busy with other processes meanwhile:"]
    for row in rows:
        gw = ", ".join(f"{k} {v:.2f}" for k, v in row["cpu"]["ms_per_request"].items())
        base = ", ".join(f"{k} {v:.2f}" for k, v in row["cpu"]["baseline_ms_per_request"].items())
        other = f"other {row['cpu']['other_cores']:.2f}/{row['cpu']['baseline_other_cores']:.2f} cores"
        out.append(f"  {row['scenario']:>10} c={row['concurrency']:<3} {gw} | {base} | {other}")
    return "\n".join(out)


def _per_process(values: dict[str, float], unit: str) -> str:
    return ", ".join(f"{k} {v:.3f}{unit}" for k, v in values.items() if k != "loadgen")


def render_extended(ext: Row) -> str:
    """The agent-shaped figures, each beside its same-run baseline."""
    out: list[str] = []
    chunks = ext.get("chunks") or {"processes": {}, "latency": {}}
    if chunks["processes"]:
        out.append("Streamed replies (20 and 200 chunks), CPU per process:")
    for name, fit in chunks["processes"].items():
        out.append(f"  {name:>9}: {fit['us_per_chunk']:8.1f} us/chunk  {fit['ms_per_turn']:7.3f} ms/turn")
    base = chunks.get("baseline_simulator")
    if base:
        out.append(
            f"  baseline simulator: {base['us_per_chunk']:.1f} us/chunk {base['ms_per_turn']:.3f} ms/turn; "
            f"ratio served/baseline {chunks['ratio']['us_per_chunk']} per chunk, "
            f"{chunks['ratio']['ms_per_turn']} per turn"
        )
    floor = chunks.get("floor")
    if floor:
        ratio = chunks["floor_ratio"]
        out.append(
            f"  floor on this machine (bench/floor.py): a bare relay {floor['relay_handler_us_per_message']:.1f} "
            f"us/message in serve's shape, {floor['relay_sidecar_us_per_message']:.1f} in the sidecar's; a bare "
            f"Litestar streaming route {floor['route_ms_per_request']:.3f} ms/request; ratios http "
            f"{ratio['http_per_chunk']} per chunk, {ratio['http_per_turn']} per turn, sidecar "
            f"{ratio['sidecar_per_chunk']} per chunk"
        )
    for size, lat in chunks["latency"].items():
        out.append(
            f"  {size:>3} chunks: TTFT p50 {lat['ttft_p50_ms']:.2f} ms (baseline {lat['baseline_ttft_p50_ms']:.2f}), "
            f"worst gap p50 {lat['worst_gap_p50_ms']:.2f} ms (baseline {lat['baseline_worst_gap_p50_ms']:.2f})"
        )
    if "agent" in ext:
        a = ext["agent"]
        out.append(f"Agent session ({a['turns']} turns; body bytes {a['body_bytes']}), CPU ms per turn:")
        for turn, row in a["ms_mean_of_5_ending_at"].items():
            out.append(f"  turns {max(1, int(turn) - 4)}-{turn}: {_per_process(row, '')}")
        if a["ms_mean_6_15"]:
            out.append(f"  mean 6-15: {_per_process(a['ms_mean_6_15'], '')}")
        if a["ms_mean_141_150"]:
            out.append(f"  mean 141-150: {_per_process(a['ms_mean_141_150'], '')}")
        out.append(
            f"  sidecar 141-150 / 6-15: {a['late_over_early_sidecar']}; first / second request: "
            f"{a['first_over_second_sidecar']} (turn 1 {_per_process(a['ms_at_turn']['1'], '')}); "
            f"baseline simulator {a['baseline_simulator_ms_per_turn']} ms/turn"
        )
    if "startup" in ext:
        s = ext["startup"]
        out.append(
            f"Start-up to first valid completion: {s['to_first_completion_s']:.3f} s "
            f"(baseline simulator {s['baseline_to_first_answer_s']:.3f} s, ratio {s['ratio']}); idle RSS MiB "
            f"{s['idle_rss_mib']} (baseline {s['baseline_idle_rss_mib']}, ratio {s['rss_ratio']})"
        )
    if "streams" in ext:
        st = ext["streams"]
        out.append(
            f"{st['streams']} open streams (heartbeat {st['heartbeat_s']} s): errors {st['errors']}, worst gap "
            f"between bytes {st['worst_gap_ms']:.0f} ms, time to first byte p50/max {st['ttfb_p50_ms']:.0f}/"
            f"{st['ttfb_max_ms']:.0f} ms, peak RSS MiB {st['peak_rss_mib']} (serve+sidecar "
            f"{st['peak_rss_serve_plus_sidecar_mib']})"
        )
        out.append(
            f"  baseline: errors {st['baseline_errors']}, worst gap {st['baseline_worst_gap_ms']:.0f} ms, first byte "
            f"p50/max {st['baseline_ttfb_p50_ms']:.0f}/{st['baseline_ttfb_max_ms']:.0f} ms, peak RSS "
            f"{st['baseline_peak_rss_mib']} MiB; ratios: RSS {st['rss_ratio']}, first byte max {st['ttfb_max_ratio']}"
        )
    if "nofile" in ext:
        out.append(nofile_text(ext["nofile"]))
    out.append(f"load average {ext['loadavg_at_start']} -> {ext['loadavg_at_end']}")
    return "\n".join(out)


def nofile_text(n: dict[str, int]) -> str:
    """What the open-streams phase did to its descriptor limit, which the processes it starts inherit."""
    done = f"raised from {n['before']} to {n['soft']}" if n["soft"] > n["before"] else f"already {n['soft']}"
    return f"RLIMIT_NOFILE {done} (hard {n['hard']}; {n['needed']} needed for the open streams)"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
