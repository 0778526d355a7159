"""``x-session-affinity`` picks the instance in every dialect, as each client's own session header does."""

from __future__ import annotations

from typing import Any

import httpx

BODIES = {
    "/v1/chat/completions": lambda text: {"model": "auto", "messages": [{"role": "user", "content": text}]},
    "/v1/responses": lambda text: {"model": "auto", "input": text},
    "/v1/messages": lambda text: {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": text}]},
}
OWN_HEADER = {
    "/v1/chat/completions": "x-session-affinity",
    "/v1/responses": "session-id",
    "/v1/messages": "x-claude-code-session-id",
}


def _instances(url: str, path: str, headers: dict[str, str], n: int) -> set[str]:
    seen = set()
    for i in range(n):
        reply = httpx.post(url + path, json=BODIES[path](f"opening line {i} of {path}"), headers=headers, timeout=30)
        assert reply.status_code == 200, reply.text
        seen.add(reply.headers["x-lingma-instance"])
    return seen


def test_one_header_keeps_new_conversations_on_one_instance(gateway_factory: Any) -> None:
    gw = gateway_factory(env={"INSTANCE_COUNT": "4"})
    for path in BODIES:
        assert len(_instances(gw.url, path, {}, 8)) > 1, f"{path}: without a header, conversations spread"
        for key in ("team-a", "team-b"):
            assert len(_instances(gw.url, path, {"x-session-affinity": key}, 5)) == 1, path
        assert len(_instances(gw.url, path, {OWN_HEADER[path]: "own"}, 5)) == 1, path
