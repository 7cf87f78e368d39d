"""Time and memory of ``licsync import enrollments --replace``: a first import, the same file again, ~1 % changed.

    python benchmarks/bench_import.py --users 100000 [--db sqlite|postgresql|both] [--baseline REV]
    python benchmarks/bench_import.py --users 1000000 --db sqlite --baseline 7ad9826 --baseline-steps first

For each database, against a fresh schema with an active subscription (``_worker.py setup``):

1. **first import** of the synthetic tenant's enrollments CSV (``tenant.py``: ~2.4 rows per user);
2. **same file again** — must write nothing;
3. **~1 % changed** — the same file with 1 row in 100 changed: an ``expires_at`` moved, a
   ``user_principal_name`` changed, a row removed (so ``--replace`` deletes it), a row added for a
   new user.

Every import runs in a fresh Python process; wall and CPU seconds cover ``import_enrollments``
(commit included) and the peak RSS is the process's own high-water mark (``VmHWM``: interpreter
and imports included, ~65 MB; ``ru_maxrss`` would also count what the parent held when it forked
the worker). ``--baseline REV`` runs the same steps with ``licsync/`` as it was at git revision
``REV`` (exported with ``git archive`` and put first on ``PYTHONPATH``), in the same run, and
prints whether both versions reported the same counts (``--baseline-steps first`` spares the ~5 GB
the old code needs for the other steps at 1,000,000 users). ``--directory`` also fills the
directory mirror with the tenant's users (as a first sync would), so the re-plan after the import
takes real seats; without it the import's own cost is measured (nobody is in the directory, the
re-plan takes nothing).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tarfile
import tempfile
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H

ROOT = H.HERE.parent
STEPS = {"first": ("first import", "csv"), "same": ("same file again", "csv"), "changed": ("~1 % changed", "changed")}
TENANT_CFG = {"name": "bench", "tenant_id": "t-bench", "client_id": "c-bench", "client_secret": "env:LICSYNC_BENCH_X"}


def say(text: str) -> None:
    print(f"· {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def make_inputs(users: int, workdir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The tenant's CSV, its ~1 %-changed variant and the counts.

    The tenant is built in a process of its own (``tenant.py csv``): a million users take ~0.9 GB,
    and a worker forked from a process that size would report that size as its own peak RSS.
    """
    path = workdir / f"enrollments-{users}.csv"
    out = subprocess.run(
        [sys.executable, str(H.HERE / "tenant.py"), "csv", "--users", str(users), "--out", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    counts = orjson.loads(out)["enrollments"]
    changed = workdir / f"enrollments-{users}-changed.csv"
    return path, changed, {**counts, **change_one_percent(path, changed)}


def change_one_percent(src: Path, dst: Path) -> dict[str, int]:
    """Copy ``src`` with 1 data row in 100 changed (dates, UPN, removed, a new user's row)."""
    counts = {"changed_expiry": 0, "changed_upn": 0, "removed": 0, "added": 0}
    with src.open(newline="", encoding="utf-8") as fin, dst.open("w", newline="", encoding="utf-8") as fout:
        r, w = csv.reader(fin), csv.writer(fout)
        w.writerow(next(r))
        for i, row in enumerate(r):
            k = i % 400
            if k == 0:
                row[9] = "2027-06-30T00:00:00Z" if row[9] != "2027-06-30T00:00:00Z" else ""
                counts["changed_expiry"] += 1
            elif k == 100:
                row[6] = "renamed-" + row[6]
                counts["changed_upn"] += 1
            elif k == 200:
                counts["removed"] += 1
                continue
            elif k == 300:
                w.writerow([*row[:5], f"new-{i:08d}", f"new-{i:08d}@bench.example", *row[7:]])
                counts["added"] += 1
            w.writerow(row)
    return counts


def export_licsync(rev: str, into: Path) -> Path:
    """``licsync/`` at git revision ``rev``, extracted under ``into`` (nothing in the repository changes)."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "licsync"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


# --------------------------------------------------------------------------- workers


def run_worker(args: list[str], ctx: dict[str, Any], code: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, *args], input=orjson.dumps(ctx), capture_output=True, env=env, timeout=7200, check=False
    )
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("@@RESULT ")]
    if proc.returncode != 0 or not lines:
        raise H.BenchError(f"{args} failed (exit {proc.returncode}):\n{proc.stderr.decode(errors='replace')[-4000:]}")
    return orjson.loads(lines[-1].removeprefix("@@RESULT "))


def piece_main() -> int:
    """``bench_import.py --piece import|directory``: one measured step, context as JSON on stdin."""
    import resource

    import _worker as W

    what = sys.argv[2]
    ctx = W.Ctx(orjson.loads(sys.stdin.buffer.read()))
    W._quiet_logs()
    out = fill_directory(ctx) if what == "directory" else import_piece(ctx, W)
    out.setdefault("rss_peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    sys.stdout.write(W.RESULT + orjson.dumps(out).decode() + "\n")
    return 0


def import_piece(ctx: Any, W: Any) -> dict[str, Any]:
    import licsync
    from licsync import db
    from licsync.service import import_enrollments

    settings, engine = ctx.settings(), ctx.engine()
    sql = W.SqlCounter(engine)

    def run() -> dict[str, Any]:
        with db.session_scope(engine) as s:
            r = import_enrollments(
                s, settings, W.TENANT, Path(ctx.raw["csv"]), replace=ctx.raw["replace"], now=ctx.now, actor="bench"
            )
        return {"rows": r.rows, "summary": r.summary()}

    out = W.measure(run, sql, ctx.profile)
    out["code"] = str(Path(licsync.__file__).parent)
    out["rss_peak_mb"] = vm_hwm_mb() or out["rss_peak_mb"]
    return out


def vm_hwm_mb() -> float | None:
    """This process's peak RSS since its ``exec`` (Linux). ``ru_maxrss`` also counts what the parent
    held when it forked the worker."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def fill_directory(ctx: Any) -> dict[str, Any]:
    """The mirror a first full sync leaves: every active user of the tenant, enabled or not."""
    from sqlalchemy import insert
    from tenant import TenantSpec, build

    from licsync.db.models import DirectoryUser

    tenant = build(TenantSpec(users=ctx.raw["users"]))
    users = [(u["id"], bool(u["accountEnabled"])) for u in tenant.directory.active_users()]
    with ctx.engine().begin() as conn:
        for i in range(0, len(users), 50_000):
            conn.execute(
                insert(DirectoryUser.__table__),  # type: ignore[attr-defined]
                [
                    {"tenant": "bench", "id": u, "account_enabled": on, "deleted": "none"}
                    for u, on in users[i : i + 50_000]
                ],
            )
    return {"users": len(users)}


# --------------------------------------------------------------------------- the run


def run_db(
    kind: str,
    label: str,
    code: Path | None,
    inputs: dict[str, Any],
    workdir: Path,
    *,
    steps: list[str],
    replace: bool,
    directory: bool,
) -> list[dict[str, Any]]:
    out = []
    with H.database(kind, workdir) as url:
        ctx = {"db_url": url, "tenant": TENANT_CFG, "seats": 10**7, "now": "2026-11-22T09:00:00+00:00"}
        run_worker([str(H.HERE / "_worker.py"), "setup"], ctx, code)
        if directory:
            run_worker([__file__, "--piece", "directory"], {**ctx, "users": inputs["users"]}, code)
        for minute, (name, (step, key)) in enumerate(STEPS.items()):
            if name not in steps:
                continue
            step_ctx = {
                **ctx,
                "csv": str(inputs[key]),
                "replace": replace,
                "now": f"2026-11-22T09:{10 + minute}:00+00:00",
            }
            res = run_worker([__file__, "--piece", "import"], step_ctx, code)
            say(f"[{kind}] {label}: {step}: {res['wall']:.1f} s, {res['cpu']:.1f} s CPU, {res['rss_peak_mb']:.0f} MB")
            out.append({**res, "db": kind, "code": label, "step": step, "code_path": res.get("code")})
    return out


HEADERS = [
    "db",
    "code",
    "step",
    "rows",
    "wall s",
    "CPU s",
    "peak RSS MB",
    "SQL stmts",
    "written",
    "re-planned",
    "seats +",
]


def table_row(r: dict[str, Any]) -> list[Any]:
    s = r["summary"]
    written = sum(
        s[k]
        for k in (
            "enrollments_added",
            "enrollments_updated",
            "enrollments_removed",
            "admins_added",
            "admins_removed",
            "learners_added",
            "learners_removed",
        )
    )
    return [
        r["db"],
        r["code"],
        r["step"],
        r["rows"],
        r["wall"],
        r["cpu"],
        round(r["rss_peak_mb"]),
        r.get("sql"),
        written,
        s["affected_users"],
        s["seats_taken"],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="licsync import enrollments: time and memory (see the module doc)")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="sqlite")
    p.add_argument("--baseline", metavar="REV", help="also measure licsync/ as of this git revision")
    p.add_argument(
        "--baseline-steps",
        default=",".join(STEPS),
        help="the steps measured with the baseline (first,same,changed): the old import of 1M users needs ~5 GB",
    )
    p.add_argument("--no-replace", dest="replace", action="store_false", help="import without --replace")
    p.add_argument("--directory", action="store_true", help="fill the directory mirror first (the re-plan takes seats)")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path, help="also write the raw results here")
    args = p.parse_args(argv)
    print(f"bench_import --users {args.users}{' --directory' if args.directory else ''} — {H.machine_line()}")
    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="licsync-bench-", dir=args.workdir)))
        say(f"writing the CSV of {args.users:,} users")
        path, changed, counts = make_inputs(args.users, tmp)
        inputs = {"csv": path, "changed": changed, "users": args.users}
        codes: list[tuple[str, Path | None]] = [("new (working tree)", None)]
        if args.baseline:
            codes.append((f"old ({args.baseline})", export_licsync(args.baseline, tmp / "baseline")))
        for kind in H.db_kinds(args.db):
            for label, code in codes:
                steps = list(STEPS) if code is None else args.baseline_steps.split(",")
                results += run_db(
                    kind, label, code, inputs, tmp, steps=steps, replace=args.replace, directory=args.directory
                )
                if args.json:
                    args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(
        f"\nCSV: {counts['rows']:,} rows ({counts['enrollments']:,} enrollments, {counts['admin_assignments']:,} admin "
        f"assignments) of {counts['enrolled_users']:,} users, {counts['catalogs']:,} catalogs, {counts['courses']:,} "
        f"courses; the changed file: {counts['changed_expiry']:,} expiries and {counts['changed_upn']:,} UPNs changed, "
        f"{counts['removed']:,} rows removed, {counts['added']:,} added. "
        f"Import {'with' if args.replace else 'without'} --replace; directory mirror "
        f"{'filled' if args.directory else 'empty'}."
    )
    print(H.table(HEADERS, [table_row(r) for r in results], title="Each import in a fresh process"))
    if args.baseline:
        for kind in H.db_kinds(args.db):
            new = {r["step"]: r["summary"] for r in results if r["db"] == kind and r["code"] == codes[0][0]}
            old = {r["step"]: r["summary"] for r in results if r["db"] == kind and r["code"] == codes[1][0]}
            same = all(new[step] == summary for step, summary in old.items())
            print(f"\n[{kind}] old and new report the same counts for the steps both ran: {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--piece":
        raise SystemExit(piece_main())
    raise SystemExit(main())
