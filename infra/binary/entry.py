"""The single executable's entry point: one file that is every command of the project.

- ``lingma-gateway serve|handler|sidecar ...``: as the installed ``lingma-gateway`` script;
- ``lingma-gateway -m sidecar ...`` (and ``-m sidecar.doctor``): how ``serve`` starts its sidecar child
  (``sys.executable -m sidecar``) and ``doctor`` its checks, which inside this executable is the executable;
- ``lingma-gateway sim ...``, or the file called by a name starting with ``lingma-sim``: the Lingma simulator,
  as ``lingma-sim``. ``--simulator`` points ``LINGMA_BIN`` at a ``lingma-sim`` link to this file.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path


def main() -> int:
    argv = sys.argv[1:]
    if Path(sys.argv[0]).name.startswith("lingma-sim"):
        from sidecar.simulator.__main__ import main as sim

        return sim(argv)
    if argv[:1] == ["sim"]:
        from sidecar.simulator.__main__ import main as sim

        return sim(argv[1:])
    if argv[:2] == ["-m", "sidecar"]:
        from sidecar.main import main as sidecar

        return sidecar(argv[2:])
    if argv[:2] == ["-m", "sidecar.doctor"]:
        from sidecar.doctor.__main__ import main as doctor

        return doctor(argv[2:])
    if argv[:2] == ["-m", "handlers"]:
        argv = argv[2:]
    from handlers.cli import main as gateway

    return gateway(argv)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
