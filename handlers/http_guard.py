"""The HTTP edge: uvicorn's httptools protocol with caps and deadlines on what a client may send.

httptools (llhttp) parses fast but enforces no limit of its own: a header that never ends is buffered without
bound, and a connection that sends nothing is held forever. This subclass adds, per connection:

- a cap on the request line (414), on the size of the request head and on the number of headers (431);
- a deadline for the whole head, from the connection's first byte or the end of the previous response (408,
  or a silent close when nothing of a request arrived), and one for the whole body (408).

The bound on open connections and the idle keep-alive timeout are uvicorn's own settings. Why this and not
h11: see ``docs/http-edge.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ("ARRIVED_AT", "HttpLimits", "guarded_protocol")

ARRIVED_AT = "lingma_gateway.arrived_at"
"""Key in the request scope's ``state``: the Unix time its head was complete (queue waits count from it)."""

log = logging.getLogger("lingma_gateway.http")

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class HttpLimits:
    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0


class _Throttle:
    """At most one rejection line a second: a flood must not become a flood of log lines."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.last = 0.0
        self.suppressed = 0

    def log(self, status: int, peer: str, message: str) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more rejected since the last line)" if self.suppressed else ""
        self.last, self.suppressed = now, 0
        log.warning("HTTP %s to %s: %s%s", status, peer, message, more)


_THROTTLE = _Throttle()


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._started = False
        """Whether any byte of the current request arrived (a silent idle connection is closed without a 408)."""

    # -- deadlines -------------------------------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if what == "head" and not self._started:
            self.transport.close()
            return
        seconds = self.limits.header_timeout if what == "head" else self.limits.body_timeout
        self._reject(_Reject(408, f"the request {what} did not arrive within {seconds:g}s"))

    # -- the protocol ------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            self._started = True
            self._head_bytes += len(data)
            if self._timer is None:  # the next request on a kept-alive connection
                self._arm(self.limits.header_timeout, "head")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Reject):
                self._reject(exc.__context__)
            else:
                _THROTTLE.log(400, _peer(self.client), "invalid HTTP request")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head:
            try:
                self._check_head_size(self._head_bytes)
            except _Reject as rejection:
                self._reject(rejection)

    def _check_head_size(self, size: int) -> None:
        if len(getattr(self, "url", b"")) > self.limits.max_request_line:
            raise _Reject(414, f"the request line exceeds {self.limits.max_request_line} bytes")
        if size > self.limits.max_header_bytes:
            raise _Reject(431, f"the request head exceeds {self.limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_request_line:
            raise _Reject(414, f"the request line exceeds {self.limits.max_request_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _Reject(431, f"the request has more than {self.limits.max_headers} header fields")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        head = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        self._check_head_size(head)
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        self.scope["state"][ARRIVED_AT] = time.time()
        if self.parser.should_upgrade() is False and _expects_body(self.headers):
            self._arm(self.limits.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._started = True, False
        super().on_message_complete()

    # -- answering ----------------------------------------------------------------------------------------------

    def _reject(self, rejection: _Reject) -> None:
        """Answer a request the app never sees (or stops seeing) and close the connection."""
        self._disarm()
        # In a head, the request has no cycle yet (self.cycle is the previous request's, already answered).
        cycle = None if self._in_head else self.cycle
        answered = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() sees a disconnect, its send() goes nowhere
            cycle.message_event.set()
        _THROTTLE.log(rejection.status, _peer(self.client), rejection.message)
        if not answered and not self.transport.is_closing():
            body = (rejection.message + "\n").encode()
            head = (
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % (rejection.status, _REASONS[rejection.status], len(body))
            )
            self.transport.write(head + body)
        self.transport.close()


def _expects_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
