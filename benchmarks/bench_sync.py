"""licsync against the floor and the baseline, side by side in one run, on SQLite and PostgreSQL.

    python benchmarks/bench_sync.py --users 100000 [--db sqlite|postgresql|both] [--churn 1000]

For each database, against a fresh synthetic tenant (``tenant.py``) behind the Graph emulator
(its own process, initial-round pages pre-rendered):

* **floor** — every delta page over loopback with plain httpx (same TLS emulator, one token
  fetched beforehand), ``orjson.loads`` on each, nothing more;
* **baseline** — the straightforward approach on the first ``--subset`` users: msgraph-sdk typed
  models (``client.users.delta.get()`` and ``with_url(odata_next_link)``), then a per-user ORM loop
  (mirror the user, read enrollments/courses/learner lists, read and take/free the seat);
  extrapolated per user;
* **licsync** — enrollment import, full sync with reconcile, churn of ``--churn`` changes then an
  incremental cycle, a full reconcile, the status query, the access query and ``explain``.

Every piece runs in a fresh process (peak RSS is its own). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
from tenant import NOW


def iso(delta_minutes: int) -> str:
    return (NOW + timedelta(minutes=delta_minutes)).isoformat()


def say(text: str) -> None:
    print(f"· {text}", file=sys.stderr, flush=True)


def run_tenant(
    kind: str,
    users: int,
    workdir: Path,
    *,
    churn: int,
    subset: int,
    pieces: set[str],
    enrolled_fraction: float = 0.8,
    catalogs: int | None = None,
    profile: Path | None = None,
    keep: bool = False,
    analyze: bool = True,
    analyze_in_tx: bool = False,
) -> dict[str, Any]:
    """The whole sequence on one database; returns each piece's result and the tenant's counts."""
    label = f"{kind} +ANALYZE in tx" if analyze_in_tx and kind == "postgresql" else kind
    out: dict[str, Any] = {"db": label}
    t0 = time.perf_counter()
    with H.EmulatorProcess(
        users, workdir / f"emu-{kind}", enrolled_fraction=enrolled_fraction, catalogs=catalogs
    ) as emu:
        out["tenant"] = {"directory": emu.info["directory"], "enrollments": emu.info["enrollments"]}
        say(f"[{kind}] emulator ready with {users:,} users in {time.perf_counter() - t0:.1f} s")
        with H.database(kind, workdir, keep=keep) as url:
            ctx: dict[str, Any] = {
                "db_url": url,
                "tenant": emu.tenant_kwargs(),
                "csv": emu.info["csv"],
                "seats": users,
                "subset": subset,
                "now": iso(0),
                "analyze_in_tx": analyze_in_tx,
            }

            def piece(name: str, key: str | None = None, **extra: Any) -> None:
                key = key or name
                if key not in pieces and name not in ("setup",):
                    return
                t = time.perf_counter()
                out[key] = H.run_piece(name, {**ctx, **extra})
                say(f"[{kind}] {key}: {time.perf_counter() - t:.1f} s")
                if analyze and name in ("import", "full_sync", "incremental"):
                    out.setdefault("analyze_s", {})[key] = H.analyze(url)

            if "floor" in pieces:
                piece("floor")
            piece("setup")
            if {"import", "full_sync", "incremental", "full_reconcile", "status", "access", "baseline"} & pieces:
                piece("import", now=iso(-60))
            piece("baseline")
            prof = {"profile": str(profile / f"full_sync-{kind}-{users}.txt")} if profile else {}
            piece("full_sync", **prof)
            if "incremental" in pieces:
                out["churn"] = emu.churn(churn, seed=7)
                prof = {"profile": str(profile / f"incremental-{kind}-{users}.txt")} if profile else {}
                piece("incremental", now=iso(15), **prof)
            piece("full_reconcile", now=iso(20))
            piece("status", now=iso(20))
            piece("access", now=iso(20))
    return out


def piece_rows(r: dict[str, Any], users: int) -> list[list[Any]]:
    """One table row per measured piece: wall, CPU, RSS, requests, SQL, per-user costs."""
    rows = []
    kind = r["db"]
    n_active = r["tenant"]["directory"]["active"]

    def row(name: str, res: dict[str, Any] | None, n: int, unit_note: str = "") -> None:
        if not res:
            return
        rows.append(
            [
                kind,
                name,
                f"{n:,}{unit_note}",
                res["wall"],
                res["cpu"],
                round(res["rss_peak_mb"]),
                res.get("requests"),
                res.get("sql"),
                H.per_user_us(res["wall"], n),
                H.per_user_us(res["cpu"], n),
            ]
        )

    row("floor: httpx + orjson.loads", r.get("floor"), n_active)
    if "baseline" in r:
        b = r["baseline"]
        row("baseline: SDK typed models (subset)", b["fetch"], b["fetch"]["users"])
        row("baseline: ORM loop reconcile (subset)", b["reconcile"], b["reconcile"]["users"])
    if "import" in r:
        row("licsync: import enrollments CSV", r["import"], r["import"]["rows"], " rows")
    row("licsync: full sync + reconcile", r.get("full_sync"), n_active)
    if "incremental" in r:
        row(f"licsync: incremental, churn {r['churn']['total']:,}", r["incremental"], r["churn"]["total"], " chg")
    if "full_reconcile" in r:
        row("licsync: full reconcile", r["full_reconcile"], r["full_reconcile"]["considered"], " cand")
    return rows


def compare_rows(r: dict[str, Any], users: int) -> list[list[Any]]:
    n_active = r["tenant"]["directory"]["active"]
    floor, full, base = r.get("floor"), r.get("full_sync"), r.get("baseline")
    if not (floor and full):
        return []
    fw, fc = floor["wall"] / n_active, floor["cpu"] / n_active
    lw, lc = full["wall"] / n_active, full["cpu"] / n_active
    bw = bc = None
    if base:
        nb = base["fetch"]["users"]
        bw = (base["fetch"]["wall"] + base["reconcile"]["wall"]) / nb
        bc = (base["fetch"]["cpu"] + base["reconcile"]["cpu"]) / nb
    return [
        [
            r["db"],
            f"{n_active:,}",
            fw * 1e6,
            lw * 1e6,
            bw * 1e6 if bw else None,
            H.ratio(lw, fw),
            H.ratio(lc, fc),
            H.ratio(bw, lw),
            H.ratio(bc, lc),
            full["wall"],
            bw * n_active if bw else None,
        ]
    ]


def query_rows(r: dict[str, Any]) -> list[list[Any]]:
    rows = []
    if "status" in r:
        s = r["status"]
        lat = s["latency"]
        rows.append(
            [
                r["db"],
                f"status ({s['catalogs']} catalogs)",
                lat["n"],
                lat["first_ms"],
                lat["p50_ms"],
                lat["p99_ms"],
                s["sql_per_call"],
            ]
        )
    if "access" in r:
        a = r["access"]
        for name, key in (("access decision (API query)", "access"), ("explain USER", "explain")):
            lat = a[key]
            rows.append([r["db"], name, lat["n"], None, lat["p50_ms"], lat["p99_ms"], None])
    return rows


PIECE_HEADERS = [
    "db",
    "piece",
    "n",
    "wall s",
    "CPU s",
    "peak RSS MB",
    "Graph req",
    "SQL stmts",
    "wall µs/n",
    "CPU µs/n",
]
COMPARE_HEADERS = [
    "db",
    "users",
    "floor µs/user",
    "licsync µs/user",
    "baseline µs/user",
    "licsync/floor (wall)",
    "licsync/floor (CPU)",
    "baseline/licsync (wall)",
    "baseline/licsync (CPU)",
    "licsync full sync s",
    "baseline extrapolated s",
]
QUERY_HEADERS = ["db", "query", "calls", "first ms", "p50 ms", "p99 ms", "SQL/call"]

ALL_PIECES = {"floor", "baseline", "import", "full_sync", "incremental", "full_reconcile", "status", "access"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="licsync vs floor vs baseline (see the module doc)")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--churn", type=int, default=1000)
    p.add_argument("--subset", type=int, default=5000, help="users the baseline is measured on")
    p.add_argument("--enrolled-fraction", type=float, default=0.8)
    p.add_argument("--catalogs", type=int, default=None)
    p.add_argument("--skip", default="", help="comma-separated pieces to leave out, e.g. baseline")
    p.add_argument("--profile", type=Path, help="write pyinstrument profiles of the sync cycles here")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the databases")
    p.add_argument(
        "--analyze-in-tx",
        action="store_true",
        help="PostgreSQL: simulate the suggested fix, ANALYZE inside the writing transaction after bulk inserts",
    )
    p.add_argument("--json", type=Path, help="also write the raw results here (after each database)")
    p.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="PostgreSQL: do not ANALYZE after the bulk writes (shows the missing-statistics plans)",
    )
    args = p.parse_args(argv)
    pieces = ALL_PIECES - {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    kinds = H.db_kinds(args.db)
    if args.db == "both" and kinds == ["sqlite"]:
        say(f"PostgreSQL at {H.PG_URL} not reachable: SQLite only")
    header = f"bench_sync --users {args.users} --churn {args.churn} --subset {args.subset} — {H.machine_line()}"
    print(header)
    results = []
    with tempfile.TemporaryDirectory(prefix="licsync-bench-", dir=args.workdir) as tmp:
        for kind in kinds:
            results.append(
                run_tenant(
                    kind,
                    args.users,
                    Path(tmp),
                    churn=args.churn,
                    subset=min(args.subset, args.users),
                    pieces=pieces,
                    enrolled_fraction=args.enrolled_fraction,
                    catalogs=args.catalogs,
                    profile=args.profile,
                    keep=args.keep,
                    analyze=args.analyze,
                    analyze_in_tx=args.analyze_in_tx,
                )
            )
            if args.json:
                args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    t = results[0]["tenant"]
    d, e = t["directory"], t["enrollments"]
    print(
        f"\nTenant: {d['users']:,} users ({d['active']:,} in the directory, {d['disabled']:,} disabled, "
        f"{d['soft_deleted']:,} soft-deleted, {d['hard_deleted']:,} hard-deleted); "
        f"{e.get('catalogs', 0):,} catalogs, {e.get('courses', 0):,} courses "
        f"({e.get('courses_unpublished', 0)} unpublished, {e.get('courses_deleted', 0)} deleted); "
        f"{e.get('enrollments', 0):,} enrollments of {e.get('enrolled_users', 0):,} users, "
        f"{e.get('admin_assignments', 0):,} admin assignments."
    )
    if "churn" in results[0]:
        print(f"Churn: {results[0]['churn']}")
    rows = [row for r in results for row in piece_rows(r, args.users)]
    print(
        H.table(
            PIECE_HEADERS,
            rows,
            title="Measured pieces (each in a fresh process; n = users, rows, changes or candidates)",
        )
    )
    rows = [row for r in results for row in compare_rows(r, args.users)]
    if rows:
        print(H.table(COMPARE_HEADERS, rows, title="Full sync with reconcile, per user: licsync vs floor vs baseline"))
    rows = [row for r in results for row in query_rows(r)]
    if rows:
        print(
            H.table(
                QUERY_HEADERS,
                rows,
                title="Read queries (in-process, warm session; access/explain on random users, "
                "half of them seat holders)",
            )
        )
    for r in results:
        if "full_sync" in r:
            s = r["full_sync"]["summary"]
            print(
                f"\n[{r['db']}] full sync summary: {s['users_seen']:,} users seen, {s['seats_taken']:,} seats taken, "
                f"{s['graph_requests']} Graph requests"
                + (f"; incremental: {r['incremental']['summary']}" if "incremental" in r else "")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
