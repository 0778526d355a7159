"""Three cells (three ``serve`` processes, each with its own data dir, socket, simulators and instance ids)
behind a real nginx configured like the Ingress: conversations stay on their cell and reuse their sessions;
a lost cell costs its conversations one fresh turn, and another when it comes back."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from common.client import socket_accepts
from tests.conftest import free_port, wait_for
from tests.e2e.deploy.nginx import Nginx, need_nginx
from tests.support.gateway import Gateway

pytestmark = pytest.mark.timeout(600)

CELLS = ("cell-a", "cell-b", "cell-c")
ADMIN = "cells-admin-token"
FAIL_TIMEOUT = 2.0
SLOW_MS = 2500
SCENARIO = {"turns": [{"match": "take your time", "reply": [{"delay_ms": SLOW_MS}, {"text": "done, slowly"}]}]}
SIM_TURN = re.compile(r"^sim: turn (\d+) of session (\w+);")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.cells = {
            name: Gateway(
                root / name,
                scenario=SCENARIO,
                env={
                    "GATEWAY_CELL": name,
                    "INSTANCE_COUNT": "2",
                    "ADMIN_TOKEN": ADMIN,
                    "LINGMA_SOCKET_PORT": str(free_port()),
                },
            )
            for name in CELLS
        }
        for gw in self.cells.values():
            gw.start(wait=False)
        for gw in self.cells.values():
            gw.wait_ready()
        self.nginx = Nginx(root / "nginx", [gw.port for gw in self.cells.values()], FAIL_TIMEOUT).start()

    def cache(self, name: str) -> dict[str, int]:
        reply = httpx.get(self.cells[name].url + "/internal/stats", headers={"authorization": f"Bearer {ADMIN}"})
        assert reply.status_code == 200, reply.text
        counters: dict[str, int] = reply.json()["session_cache"]
        return counters

    def stop(self) -> None:
        self.nginx.stop()
        for gw in self.cells.values():
            gw.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need_nginx()
    root = Path(tmp_path_factory.mktemp("cells", numbered=True))
    made = Cluster(root)
    try:
        yield made
    finally:
        made.stop()


def cell_of(instance: str) -> str:
    return next(name for name in CELLS if instance.startswith(name + "-"))


class Conversation:
    """One client conversation in a given client's style, sending its whole history every turn."""

    def __init__(self, url: str, style: str, key: str) -> None:
        self.style = style
        self.history: list[tuple[str, str]] = []
        self.turns: list[tuple[str, int, str]] = []
        """(instance, Lingma session turn number, session) per turn."""
        if style == "claude-code":
            self.claude = anthropic.Anthropic(
                base_url=url, api_key="k", max_retries=0, default_headers={"x-claude-code-session-id": key}
            )
        else:
            header = "session-id" if style == "codex" else "x-session-affinity"
            self.openai = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, default_headers={header: key})

    def _messages(self, text: str) -> list[dict[str, str]]:
        out = []
        for user, assistant in self.history:
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return [*out, {"role": "user", "content": text}]

    def say(self, text: str) -> tuple[str, int]:
        """Send one turn; the instance that answered and the Lingma session's own turn number."""
        messages = self._messages(text)
        if self.style == "claude-code":
            raw = self.claude.messages.with_raw_response.create(
                model="claude-sonnet-4-5", max_tokens=256, messages=messages
            )  # type: ignore[arg-type]
            reply = raw.parse().content[0].text  # type: ignore[union-attr]
        elif self.style == "codex":
            raw = self.openai.responses.with_raw_response.create(model="gpt-5-codex", input=messages)  # type: ignore[arg-type]
            reply = raw.parse().output_text
        else:
            raw = self.openai.chat.completions.with_raw_response.create(model="auto", messages=messages)  # type: ignore[arg-type]
            reply = raw.parse().choices[0].message.content or ""
        instance = raw.headers["x-lingma-instance"]
        match = SIM_TURN.match(reply)
        assert match, reply
        self.history.append((text, reply))
        self.turns.append((instance, int(match.group(1)), match.group(2)))
        return instance, int(match.group(1))


def conversations(url: str, tag: str, per_style: int) -> list[Conversation]:
    return [
        Conversation(url, style, f"{tag}-{style}-{i}")
        for style in ("claude-code", "codex", "plain")
        for i in range(per_style)
    ]


def test_every_follow_up_is_a_cache_hit_on_the_first_turns_cell(cluster: Cluster) -> None:
    convs = conversations(cluster.nginx.url, "stay", 10)
    before = {name: cluster.cache(name) for name in CELLS}
    for turn in range(1, 6):
        for n, conv in enumerate(convs):
            conv.say(f"conversation {n}, turn {turn}")
    after = {name: cluster.cache(name) for name in CELLS}

    first_cells = Counter(cell_of(c.turns[0][0]) for c in convs)
    assert set(first_cells) == set(CELLS), f"30 keys should reach all three cells: {first_cells}"
    for conv in convs:
        instances = {instance for instance, _, _ in conv.turns}
        assert len(instances) == 1, f"{conv.style} conversation moved: {conv.turns}"
        assert [k for _, k, _ in conv.turns] == [1, 2, 3, 4, 5], conv.turns
        assert len({session for _, _, session in conv.turns}) == 1
    for name in CELLS:
        delta = {k: after[name].get(k, 0) - before[name].get(k, 0) for k in ("hits", "misses", "stored")}
        n = first_cells[name]
        assert delta == {"hits": 4 * n, "misses": 0, "stored": 5 * n}, (name, before[name], after[name])


def test_a_heartbeat_passes_nginx_before_a_slow_first_token(cluster: Cluster) -> None:
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "take your time"}]}
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        cluster.nginx.url + "/v1/chat/completions",
        json=body,
        headers={"x-session-affinity": "slow-one"},
        timeout=30,
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line:
                seen.append((time.monotonic() - started, line))
    comments = [(t, line) for t, line in seen if line.startswith(":")]
    content = [(t, line) for t, line in seen if line.startswith("data: ") and "done, slowly" in line]
    assert comments and content, seen
    assert comments[0][0] < content[0][0]
    assert comments[0][0] < SLOW_MS / 1000 - 0.5, f"the heartbeat waited in a buffer: {seen[:3]}"
    assert content[0][0] >= SLOW_MS / 1000 - 0.2
    assert seen[-1][1] == "data: [DONE]"


def _round(convs: list[Conversation], turn: int) -> None:
    for n, conv in enumerate(convs):
        conv.say(f"conversation {n}, turn {turn}")


def test_losing_a_cell_costs_its_conversations_one_fresh_turn(cluster: Cluster) -> None:
    convs = conversations(cluster.nginx.url, "lose", 5)
    _round(convs, 1)
    _round(convs, 2)
    home = {id(c): cell_of(c.turns[0][0]) for c in convs}
    victim = Counter(home.values()).most_common(1)[0][0]
    moved = [c for c in convs if home[id(c)] == victim]
    stayed = [c for c in convs if home[id(c)] != victim]
    assert moved and stayed

    gw = cluster.cells[victim]
    gw.main.send_signal(signal.SIGKILL)
    gw.main.wait()
    wait_for(lambda: not socket_accepts(gw.socket), 30, what="the dead cell's sidecar to stop")

    # Turn 3 at once, turn 4 after nginx's fail timeout: no client error; the survivors keep their sessions;
    # the dead cell's conversations go on elsewhere, each with exactly one fresh turn.
    _round(convs, 3)
    time.sleep(FAIL_TIMEOUT + 0.5)  # nginx's own timer, not a readiness wait
    _round(convs, 4)
    for conv in stayed:
        assert [k for _, k, _ in conv.turns] == [1, 2, 3, 4] and len({i for i, _, _ in conv.turns}) == 1
    for conv in moved:
        (_, _, _), (_, _, _), (third, k3, _), (fourth, k4, _) = conv.turns
        assert cell_of(third) != victim and (k3, fourth, k4) == (1, third, 2), conv.turns

    # The cell comes back with its data dir; once nginx takes it back, its share returns to it.
    gw.start(wait=True)
    probe = Conversation(cluster.nginx.url, moved[0].style, "lose-" + _key_suffix(moved[0], convs))
    wait_for(
        lambda: cell_of(probe.say(f"probe {time.monotonic()}")[0]) == victim,
        30,
        0.3,
        what="nginx to send the returning cell its conversations",
    )
    _round(convs, 5)
    _round(convs, 6)
    for conv in stayed:
        assert [k for _, k, _ in conv.turns] == [1, 2, 3, 4, 5, 6] and len({i for i, _, _ in conv.turns}) == 1
    for conv in moved:
        (fifth, k5, _), (sixth, k6, _) = conv.turns[4:]
        assert cell_of(fifth) == victim and (k5, sixth, k6) == (1, fifth, 2), conv.turns


def _key_suffix(conv: Conversation, convs: list[Conversation]) -> str:
    """The header value a conversation was created with (its style and index among that style)."""
    same = [c for c in convs if c.style == conv.style]
    return f"{conv.style}-{same.index(conv)}"
