"""A check's verdict and how a list of them is printed; ``fail`` is the only verdict that blocks serving."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ("Check", "Verdict", "exit_code", "render", "render_json")

Verdict = Literal["ok", "warn", "fail", "skip"]
_LABEL = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    message: str
    fix: str = ""


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.verdict == "fail" for c in checks) else 0


def render(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines: list[str] = []
    for check in checks:
        lines.append(f"{_LABEL[check.verdict]:<4}  {check.name.ljust(width)}  {check.message}")
        if check.fix and check.verdict != "ok":
            lines.append(f"{'':<4}  {''.ljust(width)}  fix: {check.fix}")
    blocking = sum(c.verdict == "fail" for c in checks)
    lines.append("")
    lines.append(f"{blocking} problem(s) block serving" if blocking else "nothing blocks serving")
    return "\n".join(lines)


def render_json(checks: list[Check]) -> str:
    blocking = sum(c.verdict == "fail" for c in checks)
    return json.dumps({"checks": [asdict(c) for c in checks], "blocking": blocking}, indent=2)
