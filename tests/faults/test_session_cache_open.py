"""Opening the session cache: corrupt is moved aside whole, locked is waited for, read-only is a clear error."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sidecar.session_cache import SessionCache, SessionState
from tests.conftest import SidecarProcess, wait_for
from tests.faults.helpers import read_only, run_sidecar

DB = "session-cache.sqlite3"
HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
db.close()
"""


def _seed(data: Path) -> None:
    """A real cache with one committed entry, written by the gateway's own code."""
    data.mkdir(parents=True, exist_ok=True)

    async def put() -> None:
        cache = SessionCache(data / DB, ttl=3600, max_entries=10, counters=Counter())
        await cache.open()
        cache.store(SessionState(key="k1", session_id="s1", instance="inst-0"))
        await cache.close()

    asyncio.run(put())


def _entries(data: Path) -> list[str]:
    with sqlite3.connect(data / DB) as db:
        return [row[0] for row in db.execute("SELECT session_id FROM sessions")]


def _hold_lock(data: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data / DB)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(10)


def test_a_locked_cache_is_waited_for_then_a_clear_error_and_nothing_is_touched(short_dir: Path) -> None:
    data = short_dir / "data"
    _seed(data)
    holder = _hold_lock(data)
    try:
        before = sorted(p.name for p in data.iterdir())
        started = time.monotonic()
        result = run_sidecar(data, short_dir / "s.sock", env={"SESSION_CACHE_LOCK_TIMEOUT": "2"})
        took = time.monotonic() - started
        after = sorted(p.name for p in data.iterdir() if p.name != "gateway.lock")
    finally:
        _release(holder)
    assert result.returncode != 0
    assert "stayed locked by another process" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert 2 <= took < 15
    assert [n for n in after if "corrupt" in n] == [] and set(before) <= set(after), (before, after)
    assert _entries(data) == ["s1"], "the committed entry survives"


def test_a_lock_released_within_the_deadline_is_just_waited_for(short_dir: Path) -> None:
    data = short_dir / "data"
    _seed(data)
    holder = _hold_lock(data)
    sidecar = SidecarProcess(data, short_dir / "s.sock", ["--simulator"], {"SESSION_CACHE_LOCK_TIMEOUT": "20"})
    try:
        sidecar.start(wait=False)
        wait_for(lambda: "is locked by another process; waiting" in sidecar.log.read_text(), 20, what="the wait")
        _release(holder)
        wait_for(sidecar.ready, 30, what="the sidecar socket")
    finally:
        sidecar.stop()
    assert _entries(data) == ["s1"]
    assert not [p for p in data.iterdir() if "corrupt" in p.name]


def _damaged_page(data: Path) -> dict[str, bytes]:
    """A real database whose table pages were overwritten: it opens, and its integrity check fails."""
    path = data / DB
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, t TEXT)")
        db.executemany("INSERT INTO filler VALUES (?, ?)", [(n, "x" * 300) for n in range(200)])
    raw = bytearray(path.read_bytes())
    page = int.from_bytes(raw[16:18], "big")
    raw[3 * page + 8 : 3 * page + 200] = b"\xff" * 192
    path.write_bytes(bytes(raw))
    return {"": bytes(raw)}


def _not_a_database(data: Path) -> dict[str, bytes]:
    files = {"": b"this is not a database" * 50, "-wal": b"wal bytes" * 30, "-shm": b"shm bytes" * 30}
    for suffix, content in files.items():
        (data / f"{DB}{suffix}").write_bytes(content)
    return files


@pytest.mark.parametrize("damage", [_not_a_database, _damaged_page], ids=["not_a_database", "damaged_page"])
def test_a_corrupt_cache_is_moved_aside_with_its_wal_and_shm_and_nothing_is_deleted(sidecar_factory: object, short_dir: Path, damage: object) -> None:  # fmt: skip
    data = short_dir / "data"
    data.mkdir()
    originals = damage(data)  # type: ignore[operator]
    sidecar = sidecar_factory(["--simulator"])  # type: ignore[operator]
    log = sidecar.log.read_text()
    assert "THE SESSION CACHE DATABASE IS CORRUPT" in log, log
    aside = {p.name for p in data.iterdir() if ".corrupt-" in p.name}
    stem = min(aside, key=len)
    assert aside == {stem + s for s in originals}, aside
    for suffix, content in originals.items():
        if suffix != "-shm":  # the shared-memory index is rewritten by any reader; it holds no data
            assert (data / (stem + suffix)).read_bytes() == content, f"{suffix or 'db'} kept byte for byte"
    assert _entries(data) == [], "the new cache starts empty"


def test_a_read_only_data_dir_is_a_clear_start_up_error(short_dir: Path) -> None:
    data = short_dir / "data"
    _seed(data)
    result = run_sidecar(data, short_dir / "s.sock", wrap=lambda cmd: read_only([data], cmd))
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "moved" not in result.stderr
    assert f"cannot write to the data dir {data}" in result.stderr and "read-only" in result.stderr
    assert _entries(data) == ["s1"] and not [p for p in data.iterdir() if "corrupt" in p.name]


def test_a_read_only_cache_file_is_a_clear_start_up_error(short_dir: Path) -> None:
    data = short_dir / "data"
    _seed(data)
    result = run_sidecar(data, short_dir / "s.sock", wrap=lambda cmd: read_only([data / DB], cmd))
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot write the session cache {data / DB}" in result.stderr, result.stderr
    assert "moved" not in result.stderr
    assert _entries(data) == ["s1"] and not [p for p in data.iterdir() if "corrupt" in p.name]
