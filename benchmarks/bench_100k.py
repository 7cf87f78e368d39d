"""How long a full sync of 100,000 emulated users takes, and how many Graph requests it makes.

    python benchmarks/bench_100k.py [--users 100000] [--db sqlite|postgresql|both]

The directory sync alone (the foundation issue's question): a fresh database, a full sync of the
synthetic tenant (``tenant.py``: ~3 % disabled, 0.7 % soft-deleted, 0.3 % hard-deleted) through
the real MSAL and msgraph-sdk against the Graph emulator in its own process, then a second full
sync over the now up-to-date mirror (the daily resync), then an incremental cycle with nothing to
do. No enrollments are imported, so reconcile has no candidates; ``bench_sync.py`` measures the
sync with reconcile.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
from bench_sync import iso, say

HEADERS = [
    "db",
    "cycle",
    "users seen",
    "wall s",
    "CPU s",
    "peak RSS MB",
    "Graph requests",
    "SQL stmts",
    "users/s",
    "wall µs/user",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    print(f"bench_100k --users {args.users} — {H.machine_line()}")
    rows: list[list[Any]] = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="licsync-bench-", dir=args.workdir) as tmp:
        for kind in H.db_kinds(args.db):
            t0 = time.perf_counter()
            with H.EmulatorProcess(args.users, Path(tmp) / f"emu-{kind}") as emu:
                say(f"[{kind}] emulator ready in {time.perf_counter() - t0:.1f} s")
                d = emu.info["directory"]
                with H.database(kind, Path(tmp)) as url:
                    ctx = {"db_url": url, "tenant": emu.tenant_kwargs(), "seats": args.users, "now": iso(0)}
                    H.run_piece("setup", ctx)
                    for name, piece, minutes in (
                        ("full sync (empty mirror)", "full_sync", 0),
                        ("full resync (mirror up to date)", "full_sync", 60),
                        ("incremental, no changes", "incremental", 75),
                    ):
                        r = H.run_piece(piece, {**ctx, "now": iso(minutes)})
                        H.analyze(url)
                        seen = r["summary"]["users_seen"]
                        rows.append(
                            [
                                kind,
                                name,
                                f"{seen:,}",
                                r["wall"],
                                r["cpu"],
                                round(r["rss_peak_mb"]),
                                r["requests"],
                                r["sql"],
                                f"{seen / r['wall']:,.0f}" if r["wall"] else None,
                                H.per_user_us(r["wall"], seen) if seen else None,
                            ]
                        )
                        say(f"[{kind}] {name}: {r['wall']:.1f} s")
                notes.append(
                    f"[{kind}] tenant: {d['users']:,} users created, {d['active']:,} in the directory "
                    f"({d['disabled']:,} disabled), {d['soft_deleted']:,} soft-deleted, "
                    f"{d['hard_deleted']:,} hard-deleted"
                )
    print(
        H.table(
            HEADERS, rows, title=f"Full directory sync of {args.users:,} emulated users (each cycle in a fresh process)"
        )
    )
    for n in dict.fromkeys(notes):
        print(n)
    print(
        "Graph requests = delta pages (≤200 users each) + deletedItems pages ($top=999); "
        "the token request is not counted."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
