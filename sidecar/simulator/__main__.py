"""``lingma-sim``: ``start``, ``version`` and ``status``, as the real binary offers them."""

from __future__ import annotations

import asyncio
import json
import sys

from .cli import USAGE, VERSION, UsageError, start_options, status_work_dir
from .state import WorkDir

__all__ = ("main",)


def _status(args: list[str]) -> int:
    work = WorkDir(status_work_dir(args))
    user = work.user() if work.load_machine_id() else None
    report = {
        "logged_in": user is not None,
        "version": VERSION,
        "username": user.name if user else "",
        "user_type": user.user_type if user else "",
    }
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if command == "version":
            print(f"version: {VERSION}")
            return 0
        if command == "status":
            return _status(rest)
        if command == "start":
            from .server import serve

            return asyncio.run(serve(start_options(rest)))
        if command in ("help", "-h", "--help"):
            print(USAGE)
            return 0
        raise UsageError(f"unknown command: {command!r}")
    except UsageError as exc:
        print(f"lingma-sim: {exc}\n\n{USAGE}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
