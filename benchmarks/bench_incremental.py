"""An incremental cycle with fixed churn at growing tenant sizes, next to a full reconcile of the same tenant.

    python benchmarks/bench_incremental.py [--sizes 10000,100000] [--big] [--churn 1000] [--db sqlite]
    python benchmarks/bench_incremental.py --sizes 200000 --enrolled-fraction 1.0    # ~600,000 enrollments

For each size, in one run: a fresh tenant (``tenant.py``), the enrollment import, a full sync,
``--churn`` directory changes on distinct users (disables, deletes, restores, renames), the
incremental cycle that picks them up, then a full reconcile of the same tenant. The point: the
incremental cycle's cost follows the number of changes, not the size of the tenant. ``--big``
adds 1,000,000 users.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
from bench_sync import run_tenant, say

HEADERS = [
    "db",
    "users",
    "enrollments",
    "churn",
    "incr. wall s",
    "incr. CPU s",
    "incr. peak RSS MB",
    "incr. Graph req",
    "incr. SQL stmts",
    "incr. CPU µs/change",
    "seats +/−",
    "full reconcile s",
    "full reconcile candidates",
    "full sync s",
    "full sync CPU s",
    "full sync peak RSS MB",
    "import s",
    "import peak RSS MB",
]


def row(r: dict[str, Any], users: int) -> list[Any]:
    inc, rec, full, imp = r["incremental"], r.get("full_reconcile"), r.get("full_sync"), r.get("import")
    s = inc["summary"]
    return [
        r["db"],
        f"{users:,}",
        f"{r['tenant']['enrollments'].get('enrollments', 0):,}",
        r["churn"]["total"],
        inc["wall"],
        inc["cpu"],
        round(inc["rss_peak_mb"]),
        inc["requests"],
        inc["sql"],
        H.per_user_us(inc["cpu"], r["churn"]["total"]),
        f"+{s['seats_taken']} −{s['seats_freed']}",
        rec["wall"] if rec else None,
        f"{rec['considered']:,}" if rec else None,
        full["wall"] if full else None,
        full["cpu"] if full else None,
        round(full["rss_peak_mb"]) if full else None,
        imp["wall"] if imp else None,
        round(imp["rss_peak_mb"]) if imp else None,
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="comma-separated tenant sizes")
    p.add_argument("--big", action="store_true", help="also 1,000,000 users")
    p.add_argument("--churn", type=int, default=1000)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    p.add_argument("--enrolled-fraction", type=float, default=0.8)
    p.add_argument("--no-full-reconcile", action="store_true")
    p.add_argument("--workdir", type=Path)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.big and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    pieces = {"import", "full_sync", "incremental"} | (set() if args.no_full_reconcile else {"full_reconcile"})
    print(
        f"bench_incremental --sizes {','.join(map(str, sizes))} --churn {args.churn} "
        f"--enrolled-fraction {args.enrolled_fraction} — {H.machine_line()}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="licsync-bench-", dir=args.workdir) as tmp:
        for kind in H.db_kinds(args.db):
            for n in sizes:
                r = run_tenant(
                    kind,
                    n,
                    Path(tmp) / f"{n}",
                    churn=args.churn,
                    subset=0,
                    pieces=pieces,
                    enrolled_fraction=args.enrolled_fraction,
                )
                rows.append(row(r, n))
                say(f"[{kind}] {n:,} users: churn {r['churn']}; row: {rows[-1]}")
    print(
        H.table(
            HEADERS,
            rows,
            title=f"Incremental cycle with {args.churn:,} changes vs tenant size (each piece in a fresh process)",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
