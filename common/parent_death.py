"""A child that dies with its parent: ``serve``'s sidecar, and the sidecar's Lingma processes.

A gateway killed with SIGKILL runs no clean-up, so each child asks the kernel at spawn to signal it when its
parent goes (Linux ``prctl(PR_SET_PDEATHSIG)``); nothing is left running on the parent's ports and files.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ("die_with_parent",)

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when this process dies; None elsewhere.

    The parent may die between the fork and ``prctl``; the child then sends ``sig`` to itself at once. The
    kernel watches the spawning thread, so spawn from one that lives as long as the child should.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm
