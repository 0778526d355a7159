"""A child spawned with ``die_with_parent`` gets its signal when its parent is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import TESTS_DIR, stop_process, wait_for
from tests.support.gateway import alive

_PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from common.parent_death import die_with_parent

    child = '''
    import signal, sys, time
    def noted(sig, frame):
        open(sys.argv[1], "w").write(signal.Signals(sig).name)
        sys.exit(0)
    signal.signal(signal.SIGTERM, noted)
    open(sys.argv[1] + ".up", "w").close()
    time.sleep(60)
    '''
    sig = signal.Signals[sys.argv[2]]
    proc = subprocess.Popen([sys.executable, "-c", child, sys.argv[1]], preexec_fn=die_with_parent(sig))
    print(proc.pid, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_child_gets_the_chosen_signal_when_its_parent_is_killed(sig: signal.Signals, tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only; elsewhere the helper does nothing")
    marker = tmp_path / "signal"
    root = TESTS_DIR.parent
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(marker), sig.name], stdout=subprocess.PIPE, cwd=root, env={
            **os.environ, "PYTHONPATH": str(root)
        }
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        wait_for(lambda: Path(str(marker) + ".up").exists(), 10, what="the child to start")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not alive(child), 10, what="the child to die with its parent")
        if sig == signal.SIGTERM:
            assert marker.read_text() == "SIGTERM", "a SIGTERM lets the child stop in order"
        else:
            assert not marker.exists(), "SIGKILL gives the child no say"
    finally:
        stop_process(parent)
