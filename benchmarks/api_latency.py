"""Latency of the launch-time access check and the status endpoints, over loopback HTTP.

    python benchmarks/api_latency.py [--users 10000] [--catalogs 2] [--db sqlite|postgresql] [--requests 2000]
    python benchmarks/api_latency.py --users 200000 --rate 500 --duration 20 [--endpoints access]

Seeds a database (tests/api/seed.py's two tenants and tokens, plus ``--users`` extra seat holders of
contoso spread over ``--catalogs`` catalogs, written with bulk inserts), then starts the server the
way an admin deploys it — ``licsync --config FILE --now … serve``, uvicorn in its own process — and
measures from this process, over loopback:

* **sequential** (default): one keep-alive connection, one request after another (httpx); each
  latency is one round trip. This hides queueing: a slow response delays the next send.
* **open loop** (``--rate R --duration S``): requests are *scheduled* at fixed intervals of 1/R
  over ``--connections`` keep-alive connections (one thread each, request i on connection
  i mod C, plain sockets so the client costs microseconds per request) and every latency is taken
  from the request's scheduled send time, not from when it was actually sent: when the server (or
  the connection's previous response) is late, the wait counts (no coordinated omission). The
  table reports the achieved rate, p50/p95/p99/max, errors, and the client's own send lag (how late
  the client itself sent; large values mean the client machine was starved, not the server).

Prints Markdown tables, with the load average before and after each run.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ENDPOINTS = ("access", "access-no-seat", "catalog-status", "tenant-status")
LABELS = {
    "access": "access (platform)",
    "access-no-seat": "access, no seat",
    "catalog-status": "catalog status",
    "tenant-status": "tenant status",
}


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- seeding


def catalog_ids(n: int) -> list[str]:
    """contoso's catalogs: the seed's ``cat-a`` and ``cat-b``, then ``cat-0002`` … up to ``n``."""
    return ["cat-a", "cat-b"] + [f"cat-{k:04d}" for k in range(2, max(2, n))]


def seed_db(url: str, users: int, catalogs: int) -> Any:
    """tests/api/seed.py's database, plus ``users`` seat holders of contoso in ``catalogs`` catalogs.

    The extra rows are bulk-inserted with SQLAlchemy Core (the ORM seed takes minutes at 200k); the
    per-catalog counts are then rebuilt by ``ledger.refresh_catalogs``, as every apply keeps them.
    User i is enrolled in catalog i mod N, and every third user also in catalog (7i+1) mod N."""
    from sqlalchemy import insert

    from licsync import db, ledger
    from licsync.db.models import Catalog, Course, DirectoryUser, Enrollment, LearnerListEntry, Seat
    from tests.api.seed import NOW, seed

    engine = db.get_engine(url)
    db.upgrade(engine)
    seeded = seed(engine, contoso_seats=users + 10, extra_users=0)
    cats = catalog_ids(catalogs)
    course_of = {"cat-a": "course-a1", "cat-b": "course-b1"} | {c: f"course-{c}" for c in cats[2:]}
    t = "contoso"
    enrolled = NOW - timedelta(days=40)
    with db.session_scope(engine) as s:
        conn = s.connection()
        if cats[2:]:
            conn.execute(insert(Catalog.__table__), [{"tenant": t, "id": c, "name": f"Catalog {c[4:]}",  # type: ignore[attr-defined]
                                                      "source": "csv"} for c in cats[2:]])
            conn.execute(insert(Course.__table__), [{"tenant": t, "id": course_of[c], "catalog_id": c,  # type: ignore[attr-defined]
                                                     "title": f"Course of {c}", "status": "published"}
                                                    for c in cats[2:]])
        step = 20_000
        for lo in range(0, users, step):
            ids = range(lo, min(users, lo + step))
            du, en, ll, st = [], [], [], []
            for i in ids:
                uid = f"u-x{i:05d}"
                du.append({"tenant": t, "id": uid, "upn": f"{uid}@{t}.example", "display_name": f"Extra {i}",
                           "account_enabled": True, "deleted": "none", "first_seen": NOW - timedelta(days=60)})
                mine = {cats[i % len(cats)] if catalogs > 2 else ("cat-a" if i % 2 else "cat-b")}
                if catalogs > 2 and i % 3 == 0:
                    mine.add(cats[(7 * i + 1) % len(cats)])
                for c in mine:
                    en.append({"tenant": t, "course_id": course_of[c], "user_id": uid, "role": "learner",
                               "enrolled_at": enrolled})
                    ll.append({"tenant": t, "catalog_id": c, "user_id": uid, "added_at": enrolled})
                st.append({"tenant": t, "holder": uid, "acquired_at": NOW - timedelta(days=30, seconds=-i),
                           "acquire_reason": "enrolled"})
            conn.execute(insert(DirectoryUser.__table__), du)  # type: ignore[attr-defined]
            conn.execute(insert(Enrollment.__table__), en)  # type: ignore[attr-defined]
            conn.execute(insert(LearnerListEntry.__table__), ll)  # type: ignore[attr-defined]
            conn.execute(insert(Seat.__table__), st)  # type: ignore[attr-defined]
        ledger.refresh_catalogs(s, t, None)
    if engine.dialect.name == "postgresql":  # as autovacuum would, a minute after the load
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    db.dispose_all()
    return seeded


# --------------------------------------------------------------------------- in-process


def in_process(url: str, reps: int, users: int) -> list[list[Any]]:
    """The status read models and the access query called directly, each call in a session of its
    own as the endpoints do (what they cost without HTTP, authentication and JSON): first call,
    p50/p99 wall, p50 CPU, SQL statements per call."""
    from sqlalchemy import event
    from sqlmodel import Session

    from licsync import db, service, status
    from tests.api.seed import NOW

    engine = db.get_engine(url)
    sql = [0]

    def count(*_a: Any) -> None:
        sql[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    calls = {
        "tenant status": lambda s, _i: status.tenant_status(s, "contoso", NOW),
        "catalog status": lambda s, _i: (status.catalog_status(s, "contoso", "cat-a", NOW),
                                         status.seat_figures(s, "contoso", NOW)),
        "access decision": lambda s, i: service.access_decision(s, "contoso", f"u-x{(i * 7919) % users:05d}", NOW),
    }
    rows = []
    try:
        for name, fn in calls.items():
            n = reps * (10 if name == "access decision" else 1)
            t0 = time.perf_counter()
            with Session(engine) as s:
                fn(s, 0)
            first = (time.perf_counter() - t0) * 1000
            wall, cpu, sql[0] = [], [], 0
            for i in range(n):
                t, c = time.perf_counter(), time.process_time()
                with Session(engine) as s:
                    fn(s, i)
                wall.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
            rows.append([name, n, first, pct(wall, 50), pct(wall, 99), pct(cpu, 50), sql[0] / n, load()])
    finally:
        event.remove(engine, "before_cursor_execute", count)
        db.dispose_all()
    return rows


# --------------------------------------------------------------------------- the server


def write_config(workdir: Path, url: str, port: int) -> Path:
    """A licsync.toml for the seeded database: the seed's tenants, the API on loopback."""
    from tests.api.seed import settings_data

    lines = ["[database]", f'url = "{url}"', "", "[api]", f'listen = "127.0.0.1:{port}"', ""]
    for t in settings_data()["tenant"]:
        lines.append("[[tenant]]")
        lines += [f'{k} = "{v}"' for k, v in t.items()]
        lines.append("")
    cfg = workdir / "licsync.toml"
    cfg.write_text("\n".join(lines), encoding="utf-8")
    return cfg


def start_server(cfg: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """``licsync serve`` exactly as deployed (plus ``--now``, the seed's instant)."""
    from tests.api.seed import NOW

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LICSYNC_CONFIG", None)
    env["NOPE"] = "not-used"  # the seed's tenants name env:NOPE as their client secret; serve never uses it
    log = (workdir / "server.log").open("wb")
    cmd = [sys.executable, "-m", "licsync", "--config", str(cfg), "--now", NOW.isoformat(), "serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}):\n"
                             + (workdir / "server.log").read_text(errors="replace")[-3000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the server did not answer /healthz within 60 s")


# --------------------------------------------------------------------------- the cases


def cases(seeded: Any) -> dict[str, tuple[str, str]]:
    """Path template (``{}`` = a user number) and token per endpoint."""
    return {
        "access": ("/api/v1/tenants/contoso/access/u-x{:05d}", seeded.tokens["platform"]),
        "access-no-seat": ("/api/v1/tenants/contoso/access/nobody-{}", seeded.tokens["platform"]),
        "catalog-status": ("/api/v1/tenants/contoso/catalogs/cat-a/status", seeded.tokens["cat_a"]),
        "tenant-status": ("/api/v1/tenants/contoso/status", seeded.tokens["admin"]),
    }


def sequential(port: int, cs: dict[str, tuple[str, str]], endpoints: list[str], requests: int,
               n: int) -> list[list[Any]]:
    import httpx

    rows = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        for name in endpoints:
            path, token = cs[name]
            h = {"Authorization": f"Bearer {token}"}
            for i in range(min(200, requests)):  # warm-up
                c.get(path.format(i % n), headers=h).raise_for_status()
            before = load()
            times, size = [], 0
            for i in range(requests):
                t0 = time.perf_counter()
                r = c.get(path.format((i * 7919) % n), headers=h)
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                size = len(r.content)
            rows.append([LABELS[name], requests, pct(times, 50), pct(times, 95), pct(times, 99), max(times),
                         statistics.fmean(times), size, before, load()])
    return rows


@dataclass
class Conn:
    """One keep-alive HTTP/1.1 connection on a plain socket (the server always sends Content-Length)."""

    port: int
    sock: socket.socket | None = None
    buf: bytearray = field(default_factory=bytearray)

    def connect(self) -> None:
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf.clear()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, raw: bytes) -> int:
        """Send one request, read its whole response; returns the status code."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.sendall(raw)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), None)
        if length is None:
            raise OSError("response without Content-Length")
        while len(self.buf) < end + 4 + length:
            self._fill()
        del self.buf[: end + 4 + length]
        return status

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("connection closed by the server")
        self.buf += chunk


def open_loop(port: int, path: str, token: str, n_users: int, rate: float, duration: float,
              connections: int, warmup: float = 0.0) -> dict[str, Any]:
    """Requests scheduled every 1/rate s for ``duration`` s; latency measured from the schedule.

    ``warmup`` seconds at the same rate go first, unmeasured (page caches, pools, the thread pool)."""
    if warmup > 0:
        open_loop(port, path, token, n_users, rate, warmup, connections)
    total = max(1, round(rate * duration))
    rng = random.Random(8)
    reqs = [(f"GET {path.format(rng.randrange(n_users))} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
             f"Authorization: Bearer {token}\r\n\r\n").encode() for _ in range(total)]
    conns = [Conn(port) for _ in range(connections)]
    for c in conns:  # connect and warm each connection up before the clock starts
        c.connect()
        for _ in range(20):
            c.request(reqs[0])
    latency = [float("nan")] * total
    lag = [0.0] * total
    errors: list[str] = []
    done_at = [0.0] * connections
    start = time.perf_counter() + 0.2

    def worker(k: int) -> None:
        c = conns[k]
        for i in range(k, total, connections):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
                lag[i] = time.perf_counter() - due  # the client's own lateness (not queueing behind a reply)
            try:
                code = c.request(reqs[i])
                if code != 200:
                    errors.append(f"HTTP {code}")
            except OSError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                c.close()
                continue
            latency[i] = time.perf_counter() - due
        done_at[k] = time.perf_counter()
        c.close()

    before = load()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [x * 1000 for x in latency if x == x]
    elapsed = max(done_at) - start
    return {
        "scheduled": total, "ok": len(ok), "errors": len(errors), "error_kinds": sorted(set(errors))[:3],
        "achieved_rate": len(ok) / elapsed if elapsed > 0 else 0.0, "elapsed": elapsed,
        "p50": pct(ok, 50), "p95": pct(ok, 95), "p99": pct(ok, 99), "max": max(ok) if ok else float("nan"),
        "mean": statistics.fmean(ok) if ok else float("nan"),
        "lag_p50": pct([x * 1000 for x in lag], 50), "lag_p99": pct([x * 1000 for x in lag], 99),
        "over_5ms": sum(1 for x in ok if x > 5.0), "load_before": before, "load_after": load(),
    }


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000, help="extra seat holders of contoso")
    ap.add_argument("--catalogs", type=int, default=2, help="contoso's catalogs (the seed has 2)")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--requests", type=int, default=2_000, help="sequential mode: requests per endpoint")
    ap.add_argument("--rate", type=float, default=None, help="open-loop mode: requests per second")
    ap.add_argument("--duration", type=float, default=20.0, help="open-loop mode: seconds per endpoint")
    ap.add_argument("--connections", type=int, default=8, help="open-loop mode: keep-alive connections")
    ap.add_argument("--warmup", type=float, default=3.0, help="open-loop mode: unmeasured seconds first")
    ap.add_argument("--endpoints", default=None,
                    help=f"comma-separated, of {', '.join(ENDPOINTS)} (default: all sequential; access open-loop)")
    ap.add_argument("--in-process", type=int, default=50, metavar="N",
                    help="first call the status read models N times (access 10N) in-process; 0 skips")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database (and workdir) afterwards")
    args = ap.parse_args()
    endpoints = (args.endpoints.split(",") if args.endpoints else
                 (["access"] if args.rate else list(ENDPOINTS)))
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        ap.error(f"unknown endpoint(s): {', '.join(sorted(unknown))}")

    from _harness import database, machine_line, table

    from tests.daemon.conftest import free_port

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="licsync-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"api_latency — {machine_line()}")
    with database(args.db, workdir, keep=args.keep) as url:
        t0 = time.perf_counter()
        seeded = seed_db(url, args.users, args.catalogs)
        print(f"seeded {args.users:,} seat holders in {max(2, args.catalogs):,} catalogs ({args.db}) "
              f"in {time.perf_counter() - t0:.1f} s")
        if args.in_process:
            print(table(["query", "calls", "first ms", "p50 ms", "p99 ms", "CPU p50 ms", "SQL/call", "load"],
                        in_process(url, args.in_process, max(1, args.users)),
                        title=f"In-process, a session per call ({args.db}, {args.users:,} seat holders, "
                              f"{max(2, args.catalogs):,} catalogs)"))
        port = free_port()
        server = start_server(write_config(workdir, url, port), port, workdir)
        try:
            cs, n = cases(seeded), max(1, args.users)
            if args.rate:
                rows = []
                for name in endpoints:
                    path, token = cs[name]
                    r = open_loop(port, path, token, n, args.rate, args.duration, args.connections,
                                  args.warmup)
                    rows.append([LABELS[name], args.rate, r["achieved_rate"], r["ok"], r["errors"], r["p50"],
                                 r["p95"], r["p99"], r["max"], r["over_5ms"], r["lag_p99"], r["load_before"],
                                 r["load_after"]])
                    if r["errors"]:
                        print(f"{name}: errors {r['error_kinds']}", file=sys.stderr)
                print(table(
                    ["endpoint", "target req/s", "achieved req/s", "ok", "errors", "p50 ms", "p95 ms", "p99 ms",
                     "max ms", "> 5 ms", "client timer lag p99 ms", "load before", "load after"],
                    rows,
                    title=f"Open loop, {args.rate:g} req/s for {args.duration:g} s over {args.connections} "
                          f"keep-alive connections, latency from the scheduled send time ({args.db}, "
                          f"{args.users:,} seat holders, {max(2, args.catalogs):,} catalogs)"))
            else:
                rows = sequential(port, cs, endpoints, args.requests, n)
                print(table(["endpoint", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms",
                             "body bytes", "load before", "load after"], rows,
                            title=f"Sequential keep-alive requests ({args.db}, {args.users:,} seat holders, "
                                  f"{max(2, args.catalogs):,} catalogs)"))
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
