"""How ``licsync serve`` / ``run`` serve HTTP: TCP_NODELAY on every connection, the event loop and the
HTTP parser (``--loop``, ``--http``), a bad choice refused as configuration."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from licsync import daemon
from licsync.config import Settings
from licsync.errors import ConfigError
from tests.api.seed import settings_data
from tests.daemon.conftest import cli, free_port


def _settings(port: int) -> Settings:
    return Settings.model_validate(settings_data() | {"api": {"listen": f"127.0.0.1:{port}"}})


def test_accepted_connections_have_nodelay() -> None:
    """asyncio sets TCP_NODELAY on an accepted connection only when the listening socket says it is
    TCP; without it Nagle held every keep-alive response ~40 ms for the client's delayed ACK."""
    sock = daemon.bind(_settings(free_port()))
    assert sock.proto == socket.IPPROTO_TCP

    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            seen.set_result(w.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            w.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _r, w = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(seen, 5)
            w.close()
        return value

    for loop in ("asyncio", "auto"):
        if loop == "auto":
            sock = daemon.bind(_settings(free_port()))
        with asyncio.Runner(loop_factory=daemon.loop_factory(loop)) as r:
            assert r.run(main()) != 0, loop


def test_loop_choices() -> None:
    assert daemon.loop_factory("asyncio") is None
    try:
        import uvloop
    except ImportError:
        assert daemon.loop_factory("auto") is None
        with pytest.raises(ConfigError, match="uvloop is not installed"):
            daemon.loop_factory("uvloop")
    else:
        assert daemon.loop_factory("auto") is uvloop.new_event_loop
        assert daemon.loop_factory("uvloop") is uvloop.new_event_loop
    with pytest.raises(ConfigError, match="--loop"):
        daemon.loop_factory("trio")


def test_http_choices() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from licsync.api.connections import Guard

    for http, base in (("auto", HttpToolsProtocol), ("h11", H11Protocol), ("httptools", HttpToolsProtocol)):
        cls = daemon._server(object(), http).config.http  # uvicorn's protocol, inside the connection guard
        assert issubclass(cls, Guard) and issubclass(cls, base), (http, cls.__mro__)
    with pytest.raises(ConfigError, match="--http"):
        daemon._server(object(), "h2")


def test_serve_refuses_a_bad_choice_in_one_line(tmp_path: Path) -> None:
    from tests.api.test_cli_service import _config

    config = _config(tmp_path, free_port())
    for args, why in ((["--loop", "trio"], "--loop"), (["--http", "h2"], "--http")):
        r = cli(config, "serve", *args, timeout=60)
        assert r.returncode == 78 and why in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
