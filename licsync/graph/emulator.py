"""A stateful Microsoft Graph + Entra ID emulator over real HTTPS, for tests, demos and benchmarks.

    with EmulatorServer(Directory(), workdir=tmp_path) as srv:
        srv.directory.add_users(1_050, seed=1)
        tenant = TenantConfig(**srv.tenant_config("contoso"))
        ...  # GraphClient(tenant) talks to srv over TLS with the real MSAL and msgraph-sdk

Run standalone (another process drives it through ``/_emulator/...``):

    licsync emulator --port 8443 --users 1000 --workdir /tmp/emu --write-config /tmp/emu/licsync.toml
    python -m licsync.graph.emulator --port 8443 --users 1000 --workdir /tmp/emu   # the same, bare

The pieces: ``emulator_state`` (the directory and its change log), ``emulator_tenant`` (delta
semantics, fault knobs), ``emulator_lists`` (``/users``, ``$count``, deletedItems, sendMail),
``emulator_limits`` (a real tenant's latency, page cap, resource units and sign-in rate: off
unless a tenant gets a ``Realism`` profile, or ``--latency`` here), ``emulator_auth`` (apps,
tokens, JWKS), ``emulator_app`` (the Starlette routes).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import uvicorn

from licsync.graph.emulator_app import Emulator
from licsync.graph.emulator_limits import Realism
from licsync.graph.emulator_state import Directory
from licsync.graph.emulator_tenant import EmulatedTenant
from licsync.graph.tls import make_test_pki

__all__ = ["Directory", "EmulatedTenant", "Emulator", "EmulatorServer", "main"]


class EmulatorServer:
    """Serve an :class:`Emulator` with uvicorn over TLS in a background thread.

    The first tenant (``tenant_id``, ``directory``) is the "primary" one that the convenience
    properties (``directory``, ``emulator``, ``client_id``...) refer to; ``add_tenant`` adds more.
    """

    def __init__(
        self,
        directory: Directory | None = None,
        *,
        workdir: Path,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.app = Emulator(clock=clock)
        self._primary = self.app.add_tenant(tenant_id, directory, client_id=client_id, client_secret=client_secret)
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.base_url = ""
        self.ca_bundle = self.workdir / "pki" / "ca.pem"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        pki = make_test_pki(self.ca_bundle.parent)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only for
        # sockets that say they are TCP, and without it every response waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(128)
        self._sock = sock
        port = sock.getsockname()[1]
        host = f"[{self._host}]" if family == socket.AF_INET6 else self._host
        self.base_url = f"https://{host}:{port}"
        self.app.set_base_url(self.base_url)
        config = uvicorn.Config(
            self.app.asgi(),
            ssl_certfile=str(pki.server_cert),
            ssl_keyfile=str(pki.server_key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"graph-emulator:{port}"
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Graph emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need -------------------------------------------------------------------

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def authority(self) -> str:
        """Without the tenant: TenantConfig users build ``f"{authority}/{tenant_id}"``."""
        return self.base_url

    @property
    def emulator(self) -> EmulatedTenant:
        """The primary tenant's knobs (throttle_next, fail_page, expire_tokens, ...), stats and outbox."""
        return self._primary

    @property
    def directory(self) -> Directory:
        return self._primary.directory

    @property
    def tenant_id(self) -> str:
        return self._primary.tenant_id

    @property
    def client_id(self) -> str:
        return self._primary.client_id

    @property
    def client_secret(self) -> str:
        return self._primary.client_secret

    def add_tenant(self, tenant_id: str | None = None, directory: Directory | None = None) -> EmulatedTenant:
        return self.app.add_tenant(tenant_id, directory)

    def advance(self, seconds: float) -> None:
        """Move the emulator clock (token lifetimes, 7-day delta tokens, 30-day soft deletes)."""
        self.app.advance(seconds)

    def tenant_config(
        self,
        name: str = "contoso",
        secret_env: str | None = None,
        *,
        tenant: EmulatedTenant | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Keyword arguments for ``TenantConfig`` pointing at this server.

        The secret goes by reference, as in production: ``env:{secret_env}`` (the variable is set
        here) or, by default, ``file:`` a 0600 file in ``workdir``.
        """
        t = tenant or self._primary
        if secret_env:
            os.environ[secret_env] = t.client_secret
            ref = f"env:{secret_env}"
        else:
            path = self.workdir / f"{t.tenant_id}.secret"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(t.client_secret)
            ref = f"file:{path}"
        return {
            "name": name,
            "tenant_id": t.tenant_id,
            "client_id": t.client_id,
            "client_secret": ref,
            "authority": self.authority,
            "graph_url": self.graph_url,
            "ca_bundle": str(self.ca_bundle),
            **overrides,
        }


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; print one JSON line with URLs, CA and credentials when ready."""
    parser = argparse.ArgumentParser(prog="python -m licsync.graph.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--users", type=int, default=0, help="synthetic users to create")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--tenant-id")
    parser.add_argument("--client-id")
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--prerender", action="store_true", help="render initial-round pages once (benchmarks)")
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        metavar="SECONDS",
        help="behave like a real tenant (emulator_limits.Realism): each Graph request takes about this long, "
        "delta pages hold 200, resource units are counted and throttled",
    )
    args = parser.parse_args(argv)

    directory = Directory()
    if args.users:
        directory.add_users(args.users, seed=args.seed)
    server = EmulatorServer(
        directory,
        workdir=args.workdir,
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        host=args.host,
        port=args.port,
    )
    server.emulator.page_size = args.page_size
    if args.latency is not None:
        server.emulator.realism = Realism.graph(args.latency)
    if args.prerender:
        directory.prerender(page_size=args.page_size)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        line = {
            "base_url": server.base_url,
            "graph_url": server.graph_url,
            "authority": server.authority,
            "ca_bundle": str(server.ca_bundle),
            "tenant_id": server.tenant_id,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "control_url": f"{server.base_url}/_emulator",
        }
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
