"""The single executable, copied alone into an empty directory and run where no Python can be found, serves
every dialect against its own simulator, and its ``serve`` starts a sidecar that is itself the executable."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from sidecar.tokens import count_tokens
from tests.conftest import free_port
from tests.e2e.deploy.binary import build_binary, can_unshare, hidden_python_command

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def binary() -> Iterator[Path]:
    built = Path(tempfile.mkdtemp(prefix="lgw-bin-", dir="/tmp"))
    try:
        yield build_binary(built / "lingma-gateway")
    finally:
        shutil.rmtree(built, ignore_errors=True)


@pytest.fixture
def alone(binary: Path) -> Iterator[Path]:
    """An empty directory holding nothing but a copy of the executable."""
    root = Path(tempfile.mkdtemp(prefix="lgw-alone-", dir="/tmp"))
    shutil.copy2(binary, root / "lingma-gateway")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        out += [int(c) for c in text.split()]
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        with contextlib.suppress(OSError):
            todo += _children(p)
    return pids


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _same_file(pid: int, path: Path) -> bool:
    try:
        a, b = os.stat(f"/proc/{pid}/exe"), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _first_completion(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "first"}]}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the executable exited with {proc.returncode}")
        try:
            reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=5)
            if reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].startswith("sim: "):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("no valid completion before the deadline")


def test_the_executable_serves_every_dialect_with_no_python_around(alone: Path) -> None:
    can_unshare()
    exe = alone / "lingma-gateway"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        "env",
        "GATEWAY_HEARTBEAT_SEC=0.5",
        f"LINGMA_SOCKET_PORT={free_port()}",
        "./lingma-gateway",
        "serve",
        "--simulator",
        "--port",
        str(port),
        "--data-dir",
        str(alone / "data"),
        "--socket",
        str(alone / "s.sock"),
    ]
    log = alone / "serve.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(hidden_python_command(alone, argv), stdout=out, stderr=out)
    try:
        try:
            _first_completion(url, time.monotonic() + 120, proc)
        except AssertionError:
            raise AssertionError(f"exit {proc.poll()}:\n{log.read_text(errors='replace')[-4000:]}") from None
        first_completion_s = time.monotonic() - started

        chat = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        reply = chat.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hello chat"}])
        assert (
            reply.choices[0].message.content is not None and "you said: hello chat" in reply.choices[0].message.content
        )

        events = list(chat.responses.create(model="auto", input="hello responses", stream=True))
        kinds = [e.type for e in events]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert "you said: hello responses" in events[-1].response.output_text

        claude = anthropic.Anthropic(base_url=url, api_key="none", max_retries=0)
        message = claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hello messages"}]
        )
        assert message.stop_reason == "end_turn"
        assert "you said: hello messages" in message.content[0].text  # type: ignore[union-attr]

        # The Qwen tokenizer travels inside: 1,000 more " hello" are 1,000 Qwen tokens (an estimate says 1,500).
        def counted(text: str) -> int:
            return claude.messages.count_tokens(model="auto", messages=[{"role": "user", "content": text}]).input_tokens

        assert counted("say" + " hello" * 1000) - counted("say") == count_tokens(" hello" * 1000) == 1000

        # serve's sidecar child is the executable itself (`-m sidecar`), and so is the simulator it runs.
        tree = _tree(proc.pid)
        sidecars = [p for p in tree if "-m" in _cmdline(p) and "sidecar" in _cmdline(p)]
        assert sidecars and all(_same_file(p, exe) for p in sidecars), [_cmdline(p) for p in tree]
        sims = [p for p in tree if Path(_cmdline(p)[0]).name == "lingma-sim"]
        assert sims and all(_same_file(p, exe) for p in sims), [_cmdline(p) for p in tree]
        assert all(_same_file(p, exe) or _cmdline(p)[0] in ("unshare", "env") for p in tree)

        time.sleep(3)  # idle: measured after the requests have settled
        rss_mib = sum(_rss_kib(p) for p in _tree(proc.pid) if _same_file(p, exe)) / 1024
        size_mib = exe.stat().st_size / 2**20
        print(
            f"\nsingle executable: {size_mib:.1f} MiB, first valid completion after {first_completion_s:.1f} s, "
            f"idle RSS of its process tree {rss_mib:.0f} MiB"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            for pid in reversed(_tree(proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]


SPLIT_NO_NETWORK = r"""
set -u
ip link set lo up
./lingma-gateway sim version
./lingma-gateway sidecar --simulator --data-dir data --socket s.sock >split.log 2>&1 &
sidecar=$!
./lingma-gateway handler openai_chat,anthropic_messages --port "$PORT" --socket s.sock >>split.log 2>&1 &
handler=$!
url="http://127.0.0.1:$PORT"
deadline=$(( $(date +%s) + 120 ))
until curl -sf -o /dev/null "$url/readyz"; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "not ready in time"; cat split.log; exit 1; }
  sleep 0.1
done
echo "chat: $(curl -sf "$url/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model": "auto", "messages": [{"role": "user", "content": "offline hello"}]}')"
echo "tokens: $(curl -sf "$url/v1/messages/count_tokens" -H 'content-type: application/json' \
  -H 'anthropic-version: 2023-06-01' -d "{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"say$(printf ' hello%.0s' $(seq 1000))\"}]}")"
echo "tokens0: $(curl -sf "$url/v1/messages/count_tokens" -H 'content-type: application/json' \
  -H 'anthropic-version: 2023-06-01' -d '{"model": "auto", "messages": [{"role": "user", "content": "say"}]}')"
./lingma-gateway ping --ready --socket s.sock; echo "ping: $?"
kill -TERM "$handler" "$sidecar"; wait "$handler" "$sidecar"
./lingma-gateway ping --socket s.sock 2>&1; echo "ping after stop: $?"
"""


def test_the_executable_runs_split_mode_offline(alone: Path) -> None:
    """Split mode and the simulator by name, in a network namespace with nothing but loopback."""
    can_unshare()
    env = {**os.environ, "PORT": str(free_port()), "GATEWAY_HEARTBEAT_SEC": "0.5"}
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", SPLIT_NO_NETWORK],
        cwd=alone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["version"]
    assert "you said: offline hello" in json.loads(lines["chat"])["choices"][0]["message"]["content"]
    extra = json.loads(lines["tokens"])["input_tokens"] - json.loads(lines["tokens0"])["input_tokens"]
    assert extra == 1000, "the Qwen tokenizer counts 1,000 more tokens for 1,000 more ' hello'"
    assert lines["ping"] == "0" and "ok: 1 instance(s) ready" in out
    assert lines["ping after stop"] == "1" and "does not answer" in out
