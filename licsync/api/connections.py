"""Connection hygiene for ``licsync serve`` / ``run``: what uvicorn leaves to a proxy, done here.

uvicorn closes an idle keep-alive connection, but a connection that sends a partial request line or
trickles its headers stays open for ever, headers have no size limit under httptools, and its
``limit_concurrency`` counts those half-open connections, so a thousand of them turn every real
request into a 503. The protocol classes here (subclasses of uvicorn's, chosen by :func:`protocol_class`)
add, per connection:

* **header timeout** — the request line and headers must arrive within ``[api] header_timeout`` of the
  connection opening or of the previous response; else the connection is closed;
* **header size** — more than ``[api] max_header_bytes`` before the headers end → ``431`` and close
  (h11 enforces the same through ``h11_max_incomplete_event_size``);
* **body timeout** — once the headers are in, the body must arrive within ``[api] body_timeout``;
* **connection cap** — at ``[api] max_connections`` open connections a new one evicts the oldest
  connection that has no request in progress (half-open or idle); when every connection is busy with
  a request the newcomer gets a clean ``503`` with ``Retry-After`` and is closed.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from licsync.config import ApiConfig

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency, but uvicorn runs without it
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def _response(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n" + extra + b"\r\n" + body)


BUSY = _response(b"503 Service Unavailable", b'{"error":"too many connections; retry shortly"}', b"retry-after: 1\r\n")
TOO_LARGE = _response(b"431 Request Header Fields Too Large", b'{"error":"request headers too large"}')


class Guard:
    """The mixin: timers and the cap around uvicorn's protocol (``limits`` set by :func:`protocol_class`)."""

    limits: ApiConfig
    transport: asyncio.Transport
    connections: set[Any]
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._seen_cycle: Any = None
        self._header_bytes, self._tail = 0, b""
        self._timer: asyncio.TimerHandle | None = None
        self._since = time.monotonic()
        if len(self.connections) >= self.limits.max_connections and not _evict_one(self.connections):
            transport.write(BUSY)
            transport.close()
            return
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    # -- timers
    def _arm(self, seconds: float, check: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, check)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _await_headers(self) -> None:
        self._header_bytes, self._tail, self._since = 0, b"", time.monotonic()
        self._arm(self.limits.header_timeout.total_seconds(), self._headers_late)

    def _headers_late(self) -> None:
        if self.cycle is self._seen_cycle and not self.transport.is_closing():
            self.transport.close()

    def _body_late(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete and not self.transport.is_closing():
            self.transport.close()

    def evictable(self) -> bool:
        """No request in progress: waiting for (or reading) the headers of the next one."""
        return self.cycle is None or bool(self.cycle.response_complete)

    # -- uvicorn's hooks
    def data_received(self, data: bytes) -> None:
        if self.evictable():  # reading the headers of the next request: count them before the parser sees them
            end = (self._tail + data).find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else max(0, end - len(self._tail))
            self._tail = data[-3:]
            if self._header_bytes > self.limits.max_header_bytes:
                self._disarm()
                self.transport.write(TOO_LARGE)
                self.transport.close()
                return
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            return
        if self.cycle is not self._seen_cycle:  # the headers of a new request are complete
            self._seen_cycle = self.cycle
            self._header_bytes, self._tail = 0, b""
            self._arm(self.limits.body_timeout.total_seconds(), self._body_late)

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            # Answered before its body was read (401, 413): the rest of the body is never read either.
            self.transport.close()
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.transport is not None:  # None: refused in connection_made, uvicorn never saw it
            super().connection_lost(exc)  # type: ignore[misc]


def _evict_one(connections: set[Any]) -> bool:
    """Close the oldest connection without a request in progress; False when every one is busy."""
    oldest = min((c for c in connections if isinstance(c, Guard) and c.evictable()),
                 key=lambda c: c._since, default=None)
    if oldest is None:
        return False
    connections.discard(oldest)
    oldest._disarm()
    oldest.transport.close()
    return True


def protocol_class(http: str, limits: ApiConfig) -> type[asyncio.Protocol]:
    """uvicorn's protocol for ``http`` (auto, h11, httptools) with the :class:`Guard` around it."""
    base: Any = H11Protocol if http == "h11" or HttpToolsProtocol is None else HttpToolsProtocol
    return type(f"Guarded{base.__name__}", (Guard, base), {"limits": limits})


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files to the hard one (a 1,024 default is below what a server under
    ``max_connections`` needs); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65_536)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
