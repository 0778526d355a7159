"""The real binary's command line: Go ``flag`` syntax (``--flag=value``, ``--flag value``, one or two dashes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ("USAGE", "VERSION", "StartOptions", "UsageError", "parse_flags", "start_options", "status_work_dir")

VERSION = "2.11.1-sim"

USAGE = """usage: lingma-sim <command> [flags]

commands:
  start    --workDir=DIR --socketPort=P --httpPort=Q [--transportType=websocket] [--endpoint=URL]
  version  print the version
  status   -o json --workDir=DIR

environment: LINGMA_SIM_SCENARIO, LINGMA_SIM_LOGGED_OUT=1, LINGMA_SIM_JOURNAL, LINGMA_SIM_QUIRKS=0
"""
_START_FLAGS = ("workDir", "socketPort", "httpPort", "transportType", "endpoint")
_STATUS_FLAGS = ("workDir", "o")


class UsageError(Exception):
    """Bad command line; Go's flag package exits with status 2."""


@dataclass(frozen=True, slots=True)
class StartOptions:
    work_dir: Path
    socket_port: int = 37010
    http_port: int = 37510
    transport: str = "websocket"
    endpoint: str = ""


def parse_flags(args: list[str], known: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unexpected argument: {arg}")
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in known:
            raise UsageError(f"flag provided but not defined: -{name}")
        if not eq:
            i += 1
            if i >= len(args):
                raise UsageError(f"flag needs an argument: -{name}")
            value = args[i]
        values[name] = value
        i += 1
    return values


def _port(values: dict[str, str], name: str, default: int) -> int:
    raw = values.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f'invalid value "{raw}" for flag -{name}: parse error')
    return int(raw)


def start_options(args: list[str]) -> StartOptions:
    values = parse_flags(args, _START_FLAGS)
    transport = values.get("transportType", "websocket")
    if transport != "websocket":
        raise UsageError(f"unsupported transportType: {transport}")
    return StartOptions(
        work_dir=Path(values.get("workDir") or os.getcwd()).absolute(),
        socket_port=_port(values, "socketPort", 37010),
        http_port=_port(values, "httpPort", 37510),
        transport=transport,
        endpoint=values.get("endpoint", ""),
    )


def status_work_dir(args: list[str]) -> Path:
    values = parse_flags(args, _STATUS_FLAGS)
    return Path(values.get("workDir") or os.getcwd()).absolute()
