"""Writing a credential (a session bundle) to a file that is owner-only from the moment it exists."""

from __future__ import annotations

import os

__all__ = ("write_private",)


def write_private(text: str, out: str | None) -> None:
    """``text`` to ``out`` with mode 0600 from its creation (no window where others can read it); stdout if None."""
    if out is None:
        print(text)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text + "\n")
