"""A real ``licsync serve`` in a subprocess, for the tests that need sockets, timeouts and RSS."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from licsync import db
from tests.api.seed import settings_data
from tests.conftest import write_config
from tests.daemon.conftest import REPO, cli, env, free_port, stop, wait_for


@dataclass
class Served:
    port: int
    proc: subprocess.Popen[str]
    config: Path
    token: str  # a platform token of contoso
    stderr: str = ""  # the server's, once it stopped

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return s


def config(tmp_path: Path, port: int, api: dict[str, Any] | None = None, db_url: str | None = None) -> Path:
    data = settings_data() | {"database": {"url": db_url or f"sqlite:///{tmp_path}/t.db"},
                              "api": {"listen": f"127.0.0.1:{port}", **(api or {})}}
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    for t in data["tenant"]:
        t["client_secret"] = f"file:{secret}"
    db.upgrade(db.get_engine(data["database"]["url"]))
    return write_config(tmp_path / "licsync.toml", data)


def _low_fd_limit() -> None:  # the setting: a soft limit of 1,024 open files
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


@contextmanager
def serve(tmp_path: Path, api: dict[str, Any] | None = None, *, http: str = "auto",
          db_url: str | None = None) -> Iterator[Served]:
    port = free_port()
    cfg = config(tmp_path, port, api, db_url)
    token = cli(cfg, "token", "create", "--tenant", "contoso", "--role", "platform").stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "licsync", "--config", str(cfg), "serve", "--http", http],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO,
                            preexec_fn=_low_fd_limit)
    served = Served(port, proc, cfg, token)

    def up() -> bool:
        try:
            return httpx.get(f"{served.base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("serve to listen", up, proc=proc)
        yield served
    finally:
        code, served.stderr = stop(proc, signal.SIGTERM)
        assert code == 0, served.stderr


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``s`` (EOF or reset), or None if it stayed open that long."""
    start = time.monotonic()
    s.settimeout(seconds)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return time.monotonic() - start
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - start
    except TimeoutError:
        return None


def read_response(s: socket.socket, timeout: float = 5.0) -> bytes:
    """What the server answers, up to its close or ``timeout``."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and b"connection: close" not in out.lower():
                head, _, body = out.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
    except (ConnectionResetError, TimeoutError):
        pass
    return out
