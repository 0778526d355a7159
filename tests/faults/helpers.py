"""What the fault tests share: process trees, the three dialects' streams read down to their terminal, users."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import alive

DIALECTS = ("openai_chat", "openai_responses", "anthropic_messages")


def children(pid: int) -> list[int]:
    """The child pids of ``pid``, whichever of its threads started them (Linux ``/proc``)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def reaped(pid: int) -> bool:
    """Gone altogether: neither running nor a zombie waiting for its parent."""
    return not Path(f"/proc/{pid}").exists()


def sidecar_of(serve_pid: int) -> int | None:
    kids = [p for p in children(serve_pid) if alive(p)]
    return kids[0] if kids else None


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


READ_ONLY_MOUNTS = r"""
for path in "$@"; do
  [ "$path" = -- ] && break
  mount --bind "$path" "$path" && mount -o remount,bind,ro "$path" || exit 97
done
while [ "$1" != -- ]; do shift; done
shift
exec "$@"
"""


def _unshare() -> str:
    found = shutil.which("unshare")
    if found is None:
        message = "needs unshare (util-linux) for a user and mount namespace"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def read_only(paths: list[Path], cmd: list[str]) -> list[str]:
    """``cmd`` in its own user and mount namespaces, where ``paths`` are read-only bind mounts (as a volume is)."""
    return [_unshare(), "-rm", "sh", "-c", READ_ONLY_MOUNTS, "sh", *map(str, paths), "--", *cmd]


def foreign_owner(cmd: list[str]) -> list[str]:
    """``cmd`` in a user namespace where files of unmapped users (``nobody``'s) cannot have their mode changed."""
    return [_unshare(), "-r", *cmd]


def run_sidecar(data_dir: Path, socket: Path, *, env: dict[str, str] | None = None, timeout: float = 60,
                wrap: Callable[[list[str]], list[str]] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """A sidecar expected to refuse to start: run it to its exit and return what it said."""
    cmd = [sys.executable, "-m", "sidecar", "--simulator", "--data-dir", str(data_dir), "--socket", str(socket)]
    full_env = {**os.environ, **(env or {})}
    cmd = wrap(cmd) if wrap is not None else cmd
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


# -- the three dialects -------------------------------------------------------------------------------------


def request(dialect: str, history: list[dict[str, str]], *, stream: bool = True) -> tuple[str, dict[str, Any], dict[str, str]]:  # fmt: skip
    """(path, body, headers) of one turn carrying ``history`` (role/content pairs, oldest first)."""
    if dialect == "openai_chat":
        return "/v1/chat/completions", {"model": "auto", "stream": stream, "messages": history}, {}
    if dialect == "openai_responses":
        return "/v1/responses", {"model": "auto", "stream": stream, "input": history}, {}
    headers = {"anthropic-version": "2023-06-01"}
    return "/v1/messages", {"model": "auto", "stream": stream, "max_tokens": 256, "messages": history}, headers


@dataclass
class Outcome:
    """How one streamed request ended, as its client saw it."""

    status: int = 0
    text: str = ""
    terminal: str = ""
    """completed, error (the dialect's in-stream error), http_error (a dialect error before commit), eof."""
    error: dict[str, Any] = field(default_factory=dict)
    terminals: int = 0
    eof_after: float | None = None


def _events(body: str) -> Iterator[tuple[str | None, str]]:
    for block in body.split("\n\n"):
        name: str | None = None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield name, line[6:]


def classify(dialect: str, body: str, out: Outcome) -> None:
    """Fill ``out`` from a stream body: its text, its terminal events and whether it ended on one."""
    terminal_seen: list[tuple[str, dict[str, Any]]] = []
    last: str | None = None
    for name, data in _events(body):
        last = data if dialect == "openai_chat" else name
        if data == "[DONE]":
            continue
        payload = json.loads(data)
        if dialect == "openai_chat":
            if "error" in payload:
                terminal_seen.append(("error", payload["error"]))
            for choice in payload.get("choices", []):
                out.text += choice.get("delta", {}).get("content") or ""
                if choice.get("finish_reason"):
                    terminal_seen.append(("completed", {}))
        elif dialect == "openai_responses":
            if name == "response.output_text.delta":
                out.text += payload["delta"]
            elif name == "response.completed":
                terminal_seen.append(("completed", {}))
            elif name in ("response.failed", "response.incomplete"):
                terminal_seen.append(("error", payload["response"].get("error") or {}))
        else:
            if name == "content_block_delta" and payload["delta"].get("type") == "text_delta":
                out.text += payload["delta"]["text"]
            elif name == "message_stop":
                terminal_seen.append(("completed", {}))
            elif name == "error":
                terminal_seen.append(("error", payload["error"]))
    out.terminals = len(terminal_seen)
    ends = {"openai_chat": "[DONE]", "openai_responses": None, "anthropic_messages": None}[dialect]
    ended = last == ends if ends else last in ("response.completed", "response.failed", "response.incomplete",
                                                "message_stop", "error")  # fmt: skip
    if terminal_seen and ended:
        out.terminal, out.error = terminal_seen[-1]


def stream_turn(url: str, dialect: str, history: list[dict[str, str]], *, on_line: Callable[[int, str], None] | None = None,
                timeout: float = 30) -> Outcome:  # fmt: skip
    """One streamed turn, read to its end; ``on_line(n, line)`` runs after each line (a place to kill things).

    An ``on_line`` with a ``killed_at`` attribute (a monotonic time) dates the kill, so an EOF gets its delay.
    """
    path, body, headers = request(dialect, history)
    out = Outcome()
    lines: list[str] = []
    try:
        with httpx.stream("POST", url + path, json=body, headers=headers, timeout=timeout) as r:
            out.status = r.status_code
            if r.status_code != 200:
                r.read()
                out.terminal, out.error = "http_error", r.json().get("error", {})
                return out
            for n, line in enumerate(r.iter_lines()):
                lines.append(line)
                if on_line is not None:
                    on_line(n, line)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError) as exc:
        killed_at = getattr(on_line, "killed_at", None)
        out.terminal = "eof"
        out.eof_after = time.monotonic() - killed_at if killed_at is not None else None
        out.error = {"transport": type(exc).__name__}
        return out
    classify(dialect, "\n".join(lines) + "\n\n", out)
    if not out.terminal:
        out.terminal = "eof"
    return out


def collect_turn(url: str, dialect: str, history: list[dict[str, str]], timeout: float = 30) -> httpx.Response:
    path, body, headers = request(dialect, history, stream=False)
    return httpx.post(url + path, json=body, headers=headers, timeout=timeout)


def reply_text(dialect: str, response: httpx.Response) -> str:
    data = response.json()
    if dialect == "openai_chat":
        return str(data["choices"][0]["message"]["content"])
    if dialect == "openai_responses":
        return "".join(c["text"] for item in data["output"] if item["type"] == "message" for c in item["content"])
    return "".join(block["text"] for block in data["content"] if block["type"] == "text")


def need_proc() -> None:
    if not Path("/proc/self/task").is_dir():
        pytest.fail("the fault tests read process trees from /proc (Linux)")
