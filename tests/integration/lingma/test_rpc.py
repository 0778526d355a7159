"""RpcConnection against an in-process WebSocket peer that speaks Content-Length frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from common.errors import UpstreamTimeoutError, UpstreamUnavailableError
from sidecar.lingma.framing import FrameParser, encode_message
from sidecar.lingma.rpc import RpcConnection, RpcError, dial


class Peer:
    """A scripted server: answers ``echo`` and ``fail``, ignores ``silent``, records everything it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.messages: list[list[dict[str, Any]]] = []
        """The frames of each WebSocket message received, message by message."""
        self.arrived = asyncio.Event()
        self.ws: ServerConnection | None = None
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        self.ws = ws
        parser = FrameParser()
        async for message in ws:
            frames = parser.feed(message)
            self.messages.append(frames)
            for frame in frames:
                self.received.append(frame)
                self.arrived.set()
                if frame.get("method") == "echo":
                    await ws.send(encode_message({"jsonrpc": "2.0", "id": frame["id"], "result": frame["params"]}))
                elif frame.get("method") == "fail":
                    error = {"code": -32601, "message": "method not found"}
                    await ws.send(encode_message({"jsonrpc": "2.0", "id": frame["id"], "error": error}))

    async def push(self, *messages: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send("".join(encode_message({"jsonrpc": "2.0", **m}) for m in messages))

    async def push_apart(self, *messages: dict[str, Any]) -> None:
        """Each frame in its own WebSocket message, all sent in one go."""
        assert self.ws is not None
        for m in messages:
            await self.ws.send(encode_message({"jsonrpc": "2.0", **m}))

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.received:
                    if predicate(frame):
                        return frame
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Peer, RpcConnection]]:
    peer = Peer()
    async with serve(peer.handler, "127.0.0.1", 0) as server:
        peer.server = server
        port = next(iter(server.sockets)).getsockname()[1]
        conn = RpcConnection(await dial(port, open_timeout=5), name="test peer")
        conn.start()
        yield peer, conn
        await conn.close()


async def test_request_result_and_params_always_an_object(pair: tuple[Peer, RpcConnection]) -> None:
    peer, conn = pair
    assert await conn.request("echo", timeout=5) == {}
    assert await conn.request("echo", {"a": 1}, timeout=5) == {"a": 1}
    await conn.notify("initialized")
    note = await peer.wait_for(lambda f: f.get("method") == "initialized")
    assert note["params"] == {} and "id" not in note
    assert all(isinstance(f["params"], dict) for f in peer.received)


async def test_errors_and_timeouts(pair: tuple[Peer, RpcConnection]) -> None:
    _, conn = pair
    with pytest.raises(RpcError) as info:
        await conn.request("fail", timeout=5)
    assert info.value.rpc_code == -32601 and "method not found" in info.value.message
    with pytest.raises(UpstreamTimeoutError):
        await conn.request("silent", timeout=0.2)


async def test_every_push_is_answered_and_routed_by_request_id(pair: tuple[Peer, RpcConnection]) -> None:
    peer, conn = pair
    invoked: list[dict[str, Any]] = []

    async def tool_handler(params: dict[str, Any]) -> None:
        invoked.append(params)

    conn.tool_handler = tool_handler
    mine, other = conn.subscribe("r1", "S"), conn.subscribe("r2")
    await peer.push(
        {"id": "s-1", "method": "chat/answer", "params": {"requestId": "r1", "text": "a"}},
        {"id": "s-2", "method": "window/logMessage", "params": {"message": "noise"}},
        {"id": "s-3", "method": "session/title/update", "params": {"sessionId": "S"}},
        {"id": "s-4", "method": "tool/invoke", "params": {"requestId": "r2", "toolCallId": "t", "name": "x"}},
        {"id": "s-5", "method": "chat/finish", "params": {"requestId": "r1", "statusCode": 200}},
        {"method": "chat/answer", "params": {"requestId": "r1", "text": "no id, no reply"}},
    )
    replies = {}
    for sid in ("s-1", "s-2", "s-3", "s-4", "s-5"):
        replies[sid] = await peer.wait_for(lambda f, sid=sid: f.get("id") == sid and "method" not in f)
    assert {k: v["result"] for k, v in replies.items()} == {
        "s-1": True,
        "s-2": None,
        "s-3": None,
        "s-4": None,
        "s-5": True,
    }
    assert [(await mine.get())["method"] for _ in range(4)] == [
        "chat/answer",
        "session/title/update",
        "chat/finish",
        "chat/answer",
    ]
    # The title names r1's session: r2 (a fresh turn, not alone) could not own it and is not woken for it.
    assert [(await other.get())["method"] for _ in range(1)] == ["tool/invoke"]
    assert invoked == [{"requestId": "r2", "toolCallId": "t", "name": "x"}]
    assert conn.subscriber_count == 2
    conn.unsubscribe(mine)
    assert conn.subscriber_count == 1


async def test_a_push_without_request_id_goes_only_to_a_turn_that_can_own_it(
    pair: tuple[Peer, RpcConnection],
) -> None:
    peer, conn = pair
    fresh = [conn.subscribe(f"r{i}") for i in range(3)]
    reused = conn.subscribe("r-reused", "S")
    await peer.push(
        {"id": "t-1", "method": "session/title/update", "params": {"sessionId": "NEW", "sessionTitle": "a"}},
        {"id": "t-2", "method": "session/title/update", "params": {"sessionId": "S", "sessionTitle": "b"}},
        *({"id": f"a-{i}", "method": "chat/answer", "params": {"requestId": f"r{i}", "text": "x"}} for i in range(3)),
    )
    assert (await reused.get())["params"]["sessionTitle"] == "b"
    # Fresh turns among several in flight cannot tell whose new session a title names: none of them gets it,
    # so the first push each one sees is its own answer, which came after both titles.
    assert [(await sub.get())["method"] for sub in fresh] == ["chat/answer"] * 3
    for sub in (*fresh, reused):
        conn.unsubscribe(sub)
    alone = conn.subscribe("r-alone")
    await peer.push({"id": "t-4", "method": "session/title/update", "params": {"sessionId": "NEW2"}})
    assert (await alone.get())["params"]["sessionId"] == "NEW2"


async def test_socket_loss_fails_requests_and_subscribers(pair: tuple[Peer, RpcConnection]) -> None:
    peer, conn = pair
    sub = conn.subscribe("r1")
    pending = asyncio.create_task(conn.request("silent", timeout=10))
    await peer.wait_for(lambda f: f.get("method") == "silent")
    await peer.push({"id": "s-1", "method": "chat/answer", "params": {"requestId": "r1", "text": "x"}})
    assert (await sub.get())["method"] == "chat/answer"
    assert peer.ws is not None
    await peer.ws.close()
    with pytest.raises(UpstreamUnavailableError):
        await pending
    with pytest.raises(UpstreamUnavailableError):
        await sub.get()
    with pytest.raises(UpstreamUnavailableError):
        await sub.get()
    await conn.wait_closed()
    assert conn.closed
    with pytest.raises(UpstreamUnavailableError):
        await conn.request("echo", timeout=1)
    late = conn.subscribe("r9")
    with pytest.raises(UpstreamUnavailableError):
        await late.get()


async def test_replies_to_a_burst_of_messages_leave_together(pair: tuple[Peer, RpcConnection]) -> None:
    """Pushes that were already waiting when the reader woke are answered in one WebSocket message."""
    peer, conn = pair
    sub = conn.subscribe("r1")
    pushes = [
        {"id": f"s-{n}", "method": "chat/answer", "params": {"requestId": "r1", "text": f"{n}"}} for n in range(4)
    ]
    await peer.push_apart(*pushes)
    for n in range(4):
        await peer.wait_for(lambda f, n=n: f.get("id") == f"s-{n}" and "method" not in f)
    replies = [m for m in peer.messages if m and all("method" not in f for f in m)]
    assert [[f["id"] for f in m] for m in replies] == [["s-0", "s-1", "s-2", "s-3"]]
    assert [p["params"]["text"] for p in await sub.take()] == ["0", "1", "2", "3"]


async def test_a_lone_push_is_answered_without_waiting_for_more(pair: tuple[Peer, RpcConnection]) -> None:
    peer, conn = pair
    conn.subscribe("r1")
    await peer.push_apart({"id": "s-1", "method": "chat/answer", "params": {"requestId": "r1", "text": "a"}})
    await peer.wait_for(lambda f: f.get("id") == "s-1" and f.get("result") is True)


async def test_take_returns_every_push_already_there_and_honours_its_deadline(
    pair: tuple[Peer, RpcConnection],
) -> None:
    peer, conn = pair
    sub = conn.subscribe("r1")
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await sub.take(loop.time() - 1)
    with pytest.raises(TimeoutError):
        await sub.take(loop.time() + 0.05)
    await peer.push(*({"method": "chat/answer", "params": {"requestId": "r1", "text": t}} for t in "abc"))
    assert [p["params"]["text"] for p in await sub.take(loop.time() + 5)] == ["a", "b", "c"]
    # A push that arrived in time is taken even once the deadline has passed, not thrown away.
    await peer.push({"id": "s-late", "method": "chat/answer", "params": {"requestId": "r1", "text": "d"}})
    await peer.wait_for(lambda f: f.get("id") == "s-late" and f.get("result") is True)
    assert [p["params"]["text"] for p in await sub.take(loop.time() - 1)] == ["d"]
    await peer.push({"method": "chat/finish", "params": {"requestId": "r1"}})
    assert peer.ws is not None
    await peer.ws.close()
    await conn.wait_closed()
    assert [p["method"] for p in await sub.take()] == ["chat/finish"]
    with pytest.raises(UpstreamUnavailableError):
        await sub.take()


async def test_big_integer_ids_and_unicode_survive_the_round_trip(pair: tuple[Peer, RpcConnection]) -> None:
    """Ids are echoed exactly (no float rounding past 2**53), text keeps every code point either way."""
    peer, conn = pair
    sub = conn.subscribe("r1")
    text = 'h\u00e9llo \U0001f600 \u4e2d\u6587 \u0000 \u2028 "q" \\'
    big = 2**70 + 1
    await peer.push({"id": big, "method": "chat/answer", "params": {"requestId": "r1", "text": text}})
    reply = await peer.wait_for(lambda f: "method" not in f and f.get("id") == big)
    assert reply["result"] is True and type(reply["id"]) is int
    assert (await sub.get())["params"]["text"] == text
    assert await conn.request("echo", {"text": text, "n": -(2**64), "f": 0.1}, timeout=5) == {
        "text": text,
        "n": -(2**64),
        "f": 0.1,
    }


async def test_only_messages_that_show_lingma_working_count_as_a_sign_of_life(pair: tuple[Peer, RpcConnection]) -> None:
    """The prober excuses a missed probe while Lingma keeps working; window/telemetry chatter is not work."""
    peer, conn = pair
    conn.subscribe("r1")
    before = conn.messages_received
    await peer.push({"id": "n-1", "method": "telemetry/event", "params": {}})
    await peer.push({"id": "n-2", "method": "window/logMessage", "params": {"message": "still here"}})
    await peer.wait_for(lambda f: f.get("id") == "n-2")
    assert conn.messages_received == before
    await peer.push({"id": "s-1", "method": "chat/answer", "params": {"requestId": "r1", "text": "a"}})
    await peer.wait_for(lambda f: f.get("id") == "s-1")
    assert conn.messages_received == before + 1
