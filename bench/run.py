"""``python bench/run.py``: the same as ``python -m bench``, for callers who run the file directly."""

from __future__ import annotations

import sys
from pathlib import Path


def _main() -> int:
    # Run as a file, sys.path[0] is bench/ itself; the package lives one level up.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
