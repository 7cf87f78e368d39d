"""A hostile network against a real ``licsync serve``, with launch-time access checks running alongside.

    python benchmarks/hostile_load.py [--post-mb 100] [--half-open 1100] [--rate 200] [--duration 6]

Seeds tests/api/seed.py's database (SQLite), starts ``licsync serve`` in its own process with a soft
limit of 1,024 open files (the setting of the issue's report), and, over loopback only:

1. **baseline** — access checks alone, open loop at ``--rate`` requests/s for ``--duration`` s;
2. **huge bodies** — the same access checks while a ``--post-mb`` MB body is POSTed, without a token,
   to ``/api/v1/tenants/contoso/statements`` three ways: with its ``Content-Length``, chunked without
   one, and chunked with a valid token (cut at ``[api] max_body_statements``); for each: time to the
   answer, its status, bytes the client got to send, and the server's RSS growth (peak during the
   request, sampled every 5 ms from /proc, minus before);
3. **half-open sockets** — ``--half-open`` connections that each send a partial request line and
   headers and stop; then the access checks again, twice (from the moment the sockets opened, and
   once the burst was taken in): how many were answered, and their latency. The header timeout
   (10 s) is left to run its course only after both.

Every loop is bounded (counts and durations); nothing leaves 127.0.0.1. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ACCESS = "/api/v1/tenants/contoso/access/u-ann"
STATEMENTS = "/api/v1/tenants/contoso/statements"


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


# --------------------------------------------------------------------------- the server


def start_server(workdir: Path, python_path: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    import tomli_w

    from licsync import db, tokens
    from tests.api.seed import seed, settings_data

    url = f"sqlite:///{workdir}/hostile.db"
    engine = db.get_engine(url)
    db.upgrade(engine)
    seed(engine)
    with db.session_scope(engine) as s:
        from tests.api.seed import NOW

        token = tokens.create_token(s, "contoso", "platform", [], NOW, label="bench")
    engine.dispose()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = settings_data() | {"database": {"url": url}, "api": {"listen": f"127.0.0.1:{port}"}}
    secret = workdir / "secret"
    secret.write_text("s3cret")
    for t in data["tenant"]:
        t["client_secret"] = f"file:{secret}"
    config = workdir / "licsync.toml"
    config.write_text(tomli_w.dumps(data))

    def low_fd_limit() -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))

    env = {**os.environ, "PYTHONPATH": str(python_path)}
    proc = subprocess.Popen([sys.executable, "-m", "licsync", "--config", str(config), "--now", NOW.isoformat(),
                             "serve"], env=env, cwd=workdir, preexec_fn=low_fd_limit,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, port, token
        except OSError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise SystemExit(f"licsync serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    raise SystemExit("licsync serve did not come up")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssPeak:
    """The server's peak RSS while a block runs (sampled every 5 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.peak, self._stop = pid, rss_kib(pid), 0, threading.Event()

    def __enter__(self) -> RssPeak:
        self.peak = self.before
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.before) / 1024


# --------------------------------------------------------------------------- clients


def read_response(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


@dataclass
class Checks:
    """Open-loop access checks: request i is due at start + i/rate; latency counts from then."""

    port: int
    token: str
    rate: float
    duration: float
    connections: int = 4
    timeout: float = 10.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0

    def run(self) -> None:
        total = int(self.rate * self.duration)
        start = time.monotonic() + 0.05
        lock = threading.Lock()
        request = (f"GET {ACCESS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n\r\n").encode()

        def worker(k: int) -> None:
            s: socket.socket | None = None
            for i in range(k, total, self.connections):
                due = start + i / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if s is None:
                        s = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.sendall(request)
                    head = read_response(s)
                    ok = head.startswith(b"HTTP/1.1 200")
                except OSError:
                    ok = False
                    s = None
                with lock:
                    self.sent += 1
                    if ok:
                        self.latencies.append((time.monotonic() - due) * 1000)
                    else:
                        self.errors += 1
                        if s is not None:
                            s.close()
                            s = None
            if s is not None:
                s.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(self.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def row(self, what: str) -> str:
        ok = len(self.latencies)
        return (f"| {what} | {self.sent} | {ok} | {self.errors} | {pct(self.latencies, 50):.2f} | "
                f"{pct(self.latencies, 99):.2f} | {max(self.latencies, default=float('nan')):.2f} |")


def huge_post(port: int, mb: int, *, chunked: bool, token: str | None) -> tuple[float, str, int]:
    """POST one valid JSON array of ``mb`` MB (statements); (ms to the answer, status line, bytes sent before
    the answer or the close)."""
    element = b'{"verb":{"id":"http://adlnet.gov/expapi/verbs/launched"}},'
    middle = element * (65536 // len(element))
    total = max(1, mb * 1024 * 1024 // len(middle)) * len(middle)
    head = [f"POST {STATEMENTS} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total + 4}")  # "[" … "{}]"
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    answer: list[bytes] = []
    got = threading.Event()

    def reader() -> None:
        try:
            answer.append(read_response(s))
        except OSError:
            answer.append(b"(connection reset)")
        got.set()

    def frame(data: bytes) -> bytes:
        return (f"{len(data):x}\r\n".encode() + data + b"\r\n") if chunked else data

    start = time.monotonic()
    threading.Thread(target=reader, daemon=True).start()
    sent = 0
    try:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + frame(b"["))
        while sent < total and not got.is_set():
            s.sendall(frame(middle))
            sent += len(middle)
        if not got.is_set():
            s.sendall(frame(b"{}]") + (b"0\r\n\r\n" if chunked else b""))
    except OSError:
        pass
    got.wait(60)
    took = (time.monotonic() - start) * 1000
    s.close()
    status = (answer[0].split(b"\r\n", 1)[0].decode(errors="replace") if answer else "(no answer)") or "(closed)"
    return took, status, sent


# --------------------------------------------------------------------------- scenarios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--post-mb", type=int, default=100)
    ap.add_argument("--half-open", type=int, default=1100)
    ap.add_argument("--rate", type=float, default=200.0, help="access checks per second (open loop)")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of access checks per scenario")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--tree", type=Path, default=REPO, help="the licsync source tree the server runs (PYTHONPATH), "
                    "e.g. an older checkout to compare with")
    ap.add_argument("--checks-timeout", type=float, default=10.0, help="seconds an access check may take")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="licsync-hostile-"))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client holds the half-open sockets

    if args.tree.resolve() != REPO:
        sys.path.insert(0, str(args.tree.resolve()))  # seed with the compared tree's own schema and code
    proc, port, token = start_server(workdir, args.tree)
    try:
        loadavg = "/".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"licsync serve (pid {proc.pid}, tree {args.tree}), load {loadavg}")
        print(f"\n### Access checks at {args.rate:.0f}/s for {args.duration:.0f} s each, "
              "latency from the scheduled time (ms)\n")
        print("| while | sent | 200 | errors | p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|")
        Checks(port, token, args.rate, 1.0).run()  # warm-up (first connections, the thread pool), not shown
        for tok in (None, token):  # and the statements endpoint's paths, once each
            huge_post(port, 1, chunked=True, token=tok)
        base = Checks(port, token, args.rate, args.duration, timeout=args.checks_timeout)
        base.run()
        print(base.row("nothing else (baseline)"))

        posts: list[tuple[str, float, str, int, float]] = []
        during = Checks(port, token, args.rate, args.duration, timeout=args.checks_timeout)
        runner = threading.Thread(target=during.run)
        runner.start()
        time.sleep(0.5)
        for what, chunked, tok in ((f"{args.post_mb} MB, Content-Length, no token", False, None),
                                   (f"{args.post_mb} MB, chunked, no token", True, None),
                                   (f"{args.post_mb} MB, chunked, valid token", True, token)):
            with RssPeak(proc.pid) as rss:
                took, status, sent = huge_post(port, args.post_mb, chunked=chunked, token=tok)
            posts.append((what, took, status, sent, rss.growth_mb))
            time.sleep(0.3)
        runner.join()
        print(during.row(f"three {args.post_mb} MB POSTs"))

        sockets: list[socket.socket] = []
        opened = refused = 0
        try:
            for _ in range(args.half_open):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    sockets.append(s)
                    opened += 1
                except OSError:
                    refused += 1
            burst = Checks(port, token, args.rate, args.duration, timeout=args.checks_timeout)
            burst.run()  # from the moment the last one opened: the server still accepts the burst
            print(burst.row(f"{opened} half-open sockets, from the moment they opened"))
            held = Checks(port, token, args.rate, args.duration, timeout=args.checks_timeout)
            held.run()
            print(held.row(f"{opened} half-open sockets, held open ({args.duration:.0f} s later)"))
        finally:
            for s in sockets:
                s.close()

        print(f"\n### {args.post_mb} MB bodies to `POST …/statements` "
              f"(server RSS before: {rss_kib(proc.pid) / 1024:.0f} MB)\n")
        print("| body | answer | time to answer (ms) | client sent before it (MB) | server RSS growth (MB) |")
        print("|---|---|---:|---:|---:|")
        for what, took, status, sent, growth in posts:
            print(f"| {what} | {status} | {took:.1f} | {sent / 1024 / 1024:.1f} | {growth:.1f} |")
        print(f"\nhalf-open sockets: {opened} opened, {refused} refused by the client's connect; "
              f"load {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
