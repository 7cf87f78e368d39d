"""Issue 18 item 3: slow, idle and oversized connections are closed; a connection cap answers a clean 503.

Real sockets against a real ``licsync serve`` (small timeouts from its configuration). On the old
code a half-sent request stayed open for ever, headers had no size limit, and 1,100 half-open
sockets under ``ulimit -n 1024`` stopped all service.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.security.server import Served, closed_within, read_response, serve

FAST = {"header_timeout": "1s", "keepalive_timeout": "1s", "body_timeout": "2s"}


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Served:  # type: ignore[misc]
    with serve(tmp_path_factory.mktemp("conn"), FAST, http=request.param) as s:
        yield s


def test_a_connection_that_sends_nothing_is_closed(server: Served) -> None:
    with server.connect() as s:
        took = closed_within(s, 5)
    assert took is not None and took < 3, took


def test_a_half_sent_request_is_closed(server: Served) -> None:
    with server.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
        took = closed_within(s, 5)
    assert took is not None and took < 3, took


def test_trickled_headers_do_not_keep_a_connection(server: Served) -> None:
    with server.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        try:
            for _ in range(20):  # a header byte every 0.25 s: each one resets no timer
                time.sleep(0.25)
                s.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - start < 4


def test_an_idle_keep_alive_connection_is_closed(server: Served) -> None:
    with server.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")
        took = closed_within(s, 5)
    assert took is not None and took < 3, took


def test_a_slow_body_is_cut(server: Served) -> None:
    with server.connect() as s:
        s.sendall(f"POST /api/v1/tenants/contoso/statements HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  f"{server.token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[".encode())
        took = closed_within(s, 6)
    assert took is not None and took < 4, took


def test_oversized_headers_are_refused(server: Served) -> None:
    with server.connect() as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n")
        answer = read_response(s)
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request",
                                           b""), answer[:200]
    assert not answer.startswith(b"HTTP/1.1 200")
    assert httpx.get(f"{server.base}/healthz").status_code == 200


def test_legitimate_requests_are_served_past_1100_half_open_sockets(tmp_path: Path) -> None:
    """The server starts with a soft limit of 1,024 open files (as in the report); half-open sockets
    beyond ``max_connections`` evict the oldest half-open ones, so a real request still gets in."""
    with serve(tmp_path, {"header_timeout": "60s"}) as srv:
        sockets: list[socket.socket] = []
        try:
            for _ in range(1100):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                sockets.append(s)
            start = time.monotonic()
            r = httpx.get(f"{srv.base}/api/v1/tenants/contoso/access/u-1",
                          headers={"Authorization": f"Bearer {srv.token}"}, timeout=10)
            assert r.status_code == 200, r.text
            assert time.monotonic() - start < 5
            assert httpx.get(f"{srv.base}/healthz", timeout=10).status_code == 200
        finally:
            for s in sockets:
                s.close()


def test_busy_connections_beyond_the_cap_get_a_clean_503(tmp_path: Path) -> None:
    """When every connection has a request in progress, a newcomer is told 503 with Retry-After."""
    with serve(tmp_path, {"max_connections": 3, "body_timeout": "30s"}) as srv:
        busy = []
        try:
            for _ in range(3):  # three requests whose bodies never finish: nothing to evict
                s = srv.connect()
                s.sendall(f"POST /api/v1/tenants/contoso/statements HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Authorization: Bearer {srv.token}\r\nContent-Type: application/json\r\n"
                          "Content-Length: 100\r\n\r\n[".encode())
                busy.append(s)
            time.sleep(0.5)
            with srv.connect() as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = read_response(s)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
            assert b"retry-after: 1" in answer.lower()
        finally:
            for s in busy:
                s.close()
        time.sleep(0.3)
        assert httpx.get(f"{srv.base}/healthz").status_code == 200  # and service resumes
