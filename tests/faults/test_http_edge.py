"""Hostile and careless clients at the HTTP edge: header floods, oversized heads, stalls, idle and hung-up clients."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.flood import flood
from tests.conftest import wait_for
from tests.support.edge_gateway import API_KEY, EdgeGateway, read_all, status_of

HEAD_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
KEEPALIVE = 1.0
EDGE_ENV = {
    "GATEWAY_HEADER_TIMEOUT_SEC": str(HEAD_TIMEOUT),
    "GATEWAY_BODY_TIMEOUT_SEC": str(BODY_TIMEOUT),
    "GATEWAY_KEEPALIVE_TIMEOUT_SEC": str(KEEPALIVE),
    "GATEWAY_MAX_HEADERS": "50",
    "GATEWAY_MAX_HEADER_BYTES": "16384",
    "GATEWAY_MAX_REQUEST_LINE": "4096",
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeGateway]:
    gw = EdgeGateway(Path(tmp_path_factory.mktemp("edge")), EDGE_ENV).start()
    yield gw
    gw.stop()


def _send(gw: EdgeGateway, data: bytes) -> socket.socket:
    sock = gw.connect()
    sock.sendall(data)
    return sock


def test_a_capped_flood_of_stalled_and_endless_headers_is_cut_while_healthz_stays_fast(edge: EdgeGateway) -> None:
    result = asyncio.run(
        flood(edge.url, connections=300, duration=HEAD_TIMEOUT + 4, idle_probes=10, probe_interval=0.05,
              cap_bytes=1024 * 1024)
    )  # fmt: skip
    summary = result.summary()
    assert set(result.outcomes) <= {"408", "431", "closed"}, summary
    assert sum(result.outcomes.values()) == 300
    assert result.outcomes["408"] >= 100, summary  # the stalled half is told why
    assert result.probe_failures == 0, summary
    assert len(result.flood_ms) >= 5, summary
    assert max(result.flood_ms) < 500, summary
    assert httpx.get(edge.url + "/healthz", timeout=2).status_code == 200


def test_too_many_header_fields_is_431(edge: EdgeGateway) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    response, _ = read_all(_send(edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"))
    assert status_of(response) == 431
    assert b"header fields" in response


def test_one_huge_header_is_431(edge: EdgeGateway) -> None:
    response, _ = read_all(_send(edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n"))
    assert status_of(response) == 431


def test_a_long_request_line_is_414(edge: EdgeGateway) -> None:
    response, _ = read_all(_send(edge, b"GET /healthz?" + b"q" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status_of(response) == 414


def test_a_stalled_head_is_408_at_its_deadline(edge: EdgeGateway) -> None:
    response, took = read_all(_send(edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))
    assert status_of(response) == 408
    assert HEAD_TIMEOUT - 0.3 < took < HEAD_TIMEOUT + 1.5


def test_a_silent_connection_is_closed_at_the_head_deadline(edge: EdgeGateway) -> None:
    response, took = read_all(edge.connect())
    assert response == b""
    assert took < HEAD_TIMEOUT + 1.5


def test_a_stalled_body_is_408_at_its_deadline(edge: EdgeGateway) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    response, took = read_all(_send(edge, head + b'{"model": "m", '))
    assert status_of(response) == 408
    assert took < BODY_TIMEOUT + 1.5


def test_an_idle_kept_alive_connection_is_closed(edge: EdgeGateway) -> None:
    sock = _send(edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    first = b""
    while not first.endswith(b"}"):  # the whole first answer (a JSON body), however the reads split it
        chunk = sock.recv(65536)
        assert chunk, first
        first += chunk
    assert status_of(first) == 200
    rest, took = read_all(sock)
    assert rest == b""
    assert took < KEEPALIVE + 1.5


def test_a_keep_alive_connection_serves_several_requests(edge: EdgeGateway) -> None:
    with httpx.Client(base_url=edge.url, timeout=5) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200


def test_a_client_that_hangs_up_mid_body_is_a_disconnect_not_a_failure(edge: EdgeGateway) -> None:
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: " + API_KEY.encode() + b"\r\n"
        b"anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    sock = _send(edge, head + b'{"model": "m", "messages": [' + b" " * 5000)
    time.sleep(0.2)  # let the body start arriving before the hang-up: the point of the test
    sock.close()
    metric = 'lingma_gateway_http_requests_total{route="/v1/messages",status="499"} 1.0'

    def counted() -> bool:
        return metric in httpx.get(edge.url + "/metrics", headers={"authorization": f"Bearer {API_KEY}"}).text

    wait_for(counted, 10, what="the hang-up counted as 499")
    text = httpx.get(edge.url + "/metrics", headers={"authorization": f"Bearer {API_KEY}"}).text
    assert 'route="/v1/messages",status="500"' not in text
    logs = edge.logs()
    assert "Traceback" not in logs
    assert " ERROR " not in logs


def test_open_connections_are_bounded(tmp_path: Path) -> None:
    gw = EdgeGateway(tmp_path / "bound", {"GATEWAY_MAX_CONNECTIONS": "4", "GATEWAY_HEADER_TIMEOUT_SEC": "30"}).start()
    try:
        held = [gw.connect() for _ in range(4)]

        def refused() -> bool:
            response, _ = read_all(_send(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
            return status_of(response) == 503

        wait_for(refused, 10, what="a 503 once four connections are open")
        for sock in held:
            sock.close()
        wait_for(lambda: httpx.get(gw.url + "/healthz", timeout=2).status_code == 200, 10, what="room again")
    finally:
        gw.stop()
