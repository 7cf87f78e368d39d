"""Latency of the launch-time access check and the status endpoint, over loopback HTTP.

    python benchmarks/api_latency.py [--users 10000] [--requests 2000]

Seeds a SQLite database (tests/api/seed.py plus ``--users`` extra seat holders), serves the real
app with uvicorn in a separate process (so the client does not share its GIL), and times
sequential keep-alive requests with httpx. Prints p50/p95/p99 per endpoint.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def serve(db_path: str, port: int) -> None:
    import uvicorn

    from licsync import db, log
    from licsync.api import create_app
    from tests.api.seed import NOW, settings

    log.configure("warning")
    app = create_app(settings(), db.get_engine(f"sqlite:///{db_path}"), clock=lambda: NOW)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=2_000)
    ap.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0

    import httpx

    from licsync import db
    from tests.api.seed import seed
    from tests.daemon.conftest import free_port

    tmp = Path(tempfile.mkdtemp(prefix="licsync-bench-"))
    engine = db.get_engine(f"sqlite:///{tmp}/bench.db")
    db.upgrade(engine)
    seeded = seed(engine, contoso_seats=args.users + 10, extra_users=args.users)
    engine.dispose()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(tmp / "bench.db"), str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            for _ in range(100):
                try:
                    c.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            cases = {
                "access (platform)": ("/api/v1/tenants/contoso/access/u-x{:05d}", seeded.tokens["platform"]),
                "access, no seat": ("/api/v1/tenants/contoso/access/nobody-{}", seeded.tokens["platform"]),
                "catalog status": ("/api/v1/tenants/contoso/catalogs/cat-a/status", seeded.tokens["cat_a"]),
                "tenant status": ("/api/v1/tenants/contoso/status", seeded.tokens["admin"]),
            }
            print(f"{args.users} seat holders, {args.requests} sequential requests per endpoint, loopback, SQLite")
            print(f"{'endpoint':<20} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
            for name, (path, token) in cases.items():
                h = {"Authorization": f"Bearer {token}"}
                for i in range(200):  # warm-up
                    c.get(path.format(i % max(1, args.users)), headers=h).raise_for_status()
                times = []
                for i in range(args.requests):
                    t0 = time.perf_counter()
                    r = c.get(path.format((i * 7919) % max(1, args.users)), headers=h)
                    times.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                print(f"{name:<20} {pct(times, 50):8.2f} {pct(times, 95):8.2f} {pct(times, 99):8.2f} "
                      f"{statistics.fmean(times):8.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
