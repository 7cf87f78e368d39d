"""A large tenant against Graph's real latency and limits (issue 14), side by side in one run.

    python benchmarks/bench_scale.py --users 1000000 [--latency 0.25] [--db both] [--concurrency 16]

One emulator process serves the tenant with ``Realism`` on (every request ~``--latency`` s, ±20 %
jitter; delta pages of 200; resource-unit budget and throttle headers). Then, each piece in a fresh
process:

* the sequential delta walk: its first ``--walk-pages`` pages are measured and the whole walk is
  *computed* as pages × measured seconds a page (at 1M users, 5,000 pages: running it would take
  ~21 minutes of pure waiting);
* the first full sync with reconcile, ``full_read = "parallel"``, on each database; its peak RSS;
* a quiet incremental cycle at the same size (one delta request plus the deletedItems pages);
* a full round that fails at 90 % of the users, then its resumed round, against the clean round;
* with latency off: the full sync's cost per user next to the floor (plain httpx + ``orjson.loads``
  over the same ``/users`` shard pages).

Enrollments: ``--enrolled-fraction`` (default 0.1) of the users, imported before the sync, so the
reconcile takes real seats. The load average (1 min) is printed next to each figure: the CPU is
shared.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _harness as H
import orjson

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)


def iso(minutes: int) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


def say(text: str) -> None:
    print(f"  … {text}", file=sys.stderr, flush=True)


def load1() -> float:
    return os.getloadavg()[0]


class Run:
    """The pieces measured so far, each with the load average when it started."""

    def __init__(self, save: Path | None = None) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.save = save

    def piece(self, key: str, name: str, ctx: dict[str, Any], **extra: Any) -> dict[str, Any]:
        load, t = load1(), time.perf_counter()
        res = H.run_piece(name, {**ctx, **extra}, worker="_scale_worker.py")
        res["load"] = load
        self.results[key] = res
        say(f"{key}: {time.perf_counter() - t:.1f} s (load {load:.2f})")
        if self.save is not None:  # after each piece: a run cut short still leaves its figures
            self.save.write_bytes(orjson.dumps(self.results, option=orjson.OPT_INDENT_2))
        return res


def prepare(run: Run, kind: str, url: str, base: dict[str, Any], label: str) -> dict[str, Any]:
    ctx = {**base, "db_url": url}
    run.piece(f"{label}:setup", "setup", ctx)
    run.piece(f"{label}:import", "import", ctx, now=iso(-60))
    H.analyze(url)
    return ctx


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--latency", type=float, default=0.25, help="seconds a Graph request takes")
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--concurrency", type=int, default=16, help="read_concurrency of the parallel full read")
    p.add_argument("--enrolled-fraction", type=float, default=0.1)
    p.add_argument("--walk-pages", type=int, default=40, help="pages of the sequential walk actually measured")
    p.add_argument("--skip", default="", help="comma-separated: walk, full, incremental, resume, zero")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path, help="also write the raw results here (after each piece)")
    p.add_argument("--report", type=Path, help="only print the table of the results saved in this JSON file")
    args = p.parse_args(argv)
    if args.report:
        saved = orjson.loads(args.report.read_bytes())
        kinds = [k for k in ("sqlite", "postgresql") if f"{k}:full" in saved]
        report(saved, args, kinds, saved["directory"])
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    kinds = H.db_kinds(args.db)
    n = args.users
    print(
        f"bench_scale --users {n} --latency {args.latency} --concurrency {args.concurrency} "
        f"--enrolled-fraction {args.enrolled_fraction} — {H.machine_line()}"
    )
    run = Run(args.json)
    with tempfile.TemporaryDirectory(prefix="licsync-scale-", dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        with H.EmulatorProcess(n, Path(tmp) / "emu", enrolled_fraction=args.enrolled_fraction) as emu:
            say(f"emulator ready with {n:,} users in {time.perf_counter() - t0:.1f} s")
            directory = emu.info["directory"]
            run.results["directory"] = directory
            realism = {"default_latency": args.latency, "seed": 1}
            emu.command(op="realism", realism=realism)
            tenant = {
                **emu.tenant_kwargs(),
                "full_read": "parallel",
                "read_concurrency": args.concurrency,
                "timeout": "120s",
            }
            base = {
                "tenant": tenant,
                "csv": emu.info["csv"],
                "seats": n,
                "now": iso(0),
                "users": directory["active"],
                "control_url": emu.info["control_url"],
            }
            if "walk" not in skip:
                walk = run.piece(
                    "walk", "walk_sample", {**base, "db_url": "sqlite:///unused.db"}, pages=args.walk_pages
                )
                walk_pages = math.ceil(directory["active"] / 200)
                walk["computed_s"] = walk_pages * walk["seconds_per_page"]
                walk["computed_pages"] = walk_pages
            for kind in [] if "full" in skip else kinds:
                with H.database(kind, Path(tmp)) as url:
                    ctx = prepare(run, kind, url, base, kind)
                    run.piece(f"{kind}:full", "full_sync", ctx)
                    H.analyze(url)
                    if "incremental" not in skip:
                        run.piece(f"{kind}:incremental", "incremental", ctx, now=iso(15))
            if "resume" not in skip:
                kind = kinds[0]
                with H.database(kind, Path(tmp)) as url:
                    ctx = prepare(run, kind, url, base, f"{kind}-resume")
                    failing = {**tenant, "max_retries": 0}
                    run.piece(f"{kind}:fail90", "full_sync_fail", ctx, tenant=failing, fail_at=0.9)
                    run.piece(f"{kind}:resumed", "full_sync", ctx)
            if "zero" not in skip:
                emu.command(op="realism", realism=None)
                run.piece("floor", "floor_users", {**base, "db_url": "sqlite:///unused.db"})
                with H.database("sqlite", Path(tmp)) as url:
                    ctx = prepare(run, "sqlite", url, base, "sqlite-zero")
                    run.piece("sqlite:zero", "full_sync", ctx)
    report(run.results, args, kinds, directory)
    return 0


def report(r: dict[str, dict[str, Any]], args: argparse.Namespace, kinds: list[str], directory: dict[str, Any]) -> None:
    n = directory["active"]
    lat = args.latency
    rows: list[list[Any]] = []
    w = r.get("walk") or {"computed_s": 0.0, "computed_pages": 0, "pages": 0, "seconds_per_page": 0.0, "load": None}
    if "walk" in r:
        rows.append(
            [
                "sequential delta walk (computed: pages × measured s/page)",
                "–",
                f"{w['computed_pages']:,} pages",
                w["computed_s"],
                None,
                None,
                w["computed_pages"],
                w["load"],
                f"measured {w['pages']} pages: {w['seconds_per_page'] * 1000:.0f} ms/page",
            ]
        )
    for kind in kinds:
        if f"{kind}:full" not in r:
            continue
        f = r[f"{kind}:full"]
        s = f["summary"]
        rows.append(
            [
                f"first full sync + reconcile, parallel read, {lat * 1000:.0f} ms/request",
                kind,
                s["users_seen"],
                f["wall"],
                f["cpu"],
                f["rss_peak_mb"],
                f["requests"],
                f["load"],
                f"{s['seats_taken']:,} seats taken; {w['computed_s'] / f['wall']:.1f}× faster than the walk",
            ]
        )
        if f"{kind}:incremental" in r:
            i = r[f"{kind}:incremental"]
            rows.append(
                [
                    "quiet incremental cycle",
                    kind,
                    n,
                    i["wall"],
                    i["cpu"],
                    i["rss_peak_mb"],
                    i["requests"],
                    i["load"],
                    f"{i['requests']} Graph requests at {lat * 1000:.0f} ms each",
                ]
            )
    kind = kinds[0]
    if f"{kind}:fail90" in r and f"{kind}:resumed" in r and f"{kind}:full" in r:
        a, b, clean = r[f"{kind}:fail90"], r[f"{kind}:resumed"], r[f"{kind}:full"]
        total = a["wall"] + b["wall"]
        rows.append(
            [
                "full round failing at 90 %",
                kind,
                a["users_read"],
                a["wall"],
                a["cpu"],
                a["rss_peak_mb"],
                None,
                a["load"],
                a.get("error", "")[:60],
            ]
        )
        rows.append(
            [
                "… its resumed round",
                kind,
                b["summary"]["users_seen"],
                b["wall"],
                b["cpu"],
                b["rss_peak_mb"],
                b["requests"],
                b["load"],
                f"failed + resumed = {total:.1f} s = {total / clean['wall']:.2f}× the clean round",
            ]
        )
    if "sqlite:zero" in r and "floor" in r:
        z, fl = r["sqlite:zero"], r["floor"]
        zu, fu = z["wall"] / n * 1e6, fl["wall"] / max(1, fl["users"]) * 1e6
        zc, fc = z["cpu"] / n * 1e6, fl["cpu"] / max(1, fl["users"]) * 1e6
        rows.append(
            ["floor: httpx + orjson.loads over the /users shard pages, no latency", "–", fl["users"], fl["wall"],
             fl["cpu"], fl["rss_peak_mb"], fl["requests"], fl["load"], f"{fu:.1f} µs/user wall, {fc:.1f} CPU"]
        )
        rows.append(
            ["full sync + reconcile, parallel read, no latency", "sqlite", z["summary"]["users_seen"], z["wall"],
             z["cpu"], z["rss_peak_mb"], z["requests"], z["load"],
             f"{zu:.0f} µs/user wall ({zu / fu:.0f}× floor), {zc:.0f} CPU ({zc / fc:.0f}×)"]
        )
    print(
        H.table(
            ["piece", "db", "users", "wall s", "CPU s", "peak RSS MB", "Graph req", "load 1m", "note"],
            rows,
            title=f"{directory['active']:,} users in the directory; each piece in a fresh process",
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
