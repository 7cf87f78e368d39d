"""A synthetic Microsoft 365 tenant for the benchmarks: users, catalogs, courses, enrollments, churn.

Everything is deterministic from ``(users, seed)``: the same arguments give the same user ids,
the same enrollments CSV and the same churn, so runs can be compared.

The mix (defaults, see :class:`TenantSpec`):

* users: ~3 % disabled, ~1 % deleted (0.7 % soft-deleted — restorable, listed under
  ``deletedItems`` — and 0.3 % hard-deleted, gone before licsync ever looked), ~2 % guests;
* catalogs: ``max(3, users // 2000)``, 8 courses each, ~5 % of courses unpublished (still count)
  and ~3 % deleted (do not count);
* enrollments: 80 % of users are enrolled, 1-5 courses each (mean 3, "~3 per enrolled user"),
  drawn from one or two "home" catalogs; 1 % of users also hold an admin assignment; ~20 % of
  enrollments carry an ``expires_at``. Deleted users keep their enrollments, as an LMS does;
* churn of K changes, each on a distinct user: 35 % disables, 20 % soft deletes, 10 % hard
  deletes, 10 % restores of soft-deleted users, 10 % re-enables, 15 % renames (UPN, mail and
  display name; no seat effect). A pool that runs dry hands its share to renames.

Two entry points:

    python benchmarks/tenant.py csv --users 1000 --out /tmp/enrollments.csv    # just the CSV
    python benchmarks/tenant.py serve --users 100000 --workdir /tmp/emu        # the Graph emulator

``serve`` runs the licsync Graph emulator in this (separate) process with the tenant loaded and
the initial-round pages pre-rendered, writes ``enrollments.csv`` into the workdir, prints one
JSON line (URLs, CA, credentials, counts), then takes JSON commands on stdin, one per line,
answering each with one JSON line: ``{"op": "churn", "k": 1000, "seed": 7}``,
``{"op": "stats"}``, ``{"op": "prerender"}``, ``{"op": "realism", "realism": {"default_latency": 0.25}}``
(``licsync.graph.emulator_limits.Realism``; ``null`` switches it off). End of input stops it.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from licsync.catalogs.csv_import import HEADER
from licsync.graph.emulator_state import Directory

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # the benchmarks' "today"
CSV_HEADER = HEADER  # the contract's enrollment CSV header
CHURN_MIX = (
    ("disable", 0.35),
    ("soft_delete", 0.20),
    ("hard_delete", 0.10),
    ("restore", 0.10),
    ("enable", 0.10),
    ("rename", 0.15),
)


@dataclass(frozen=True)
class TenantSpec:
    users: int
    seed: int = 1
    disabled: float = 0.03
    soft_deleted: float = 0.007
    hard_deleted: float = 0.003
    guests: float = 0.02
    enrolled: float = 0.80
    max_courses: int = 5  # each enrolled user takes 1..max_courses courses, uniform (mean 3)
    admins: float = 0.01
    catalogs: int | None = None  # default max(3, users // 2000)
    courses_per_catalog: int = 8
    unpublished: float = 0.05
    deleted_courses: float = 0.03

    @property
    def n_catalogs(self) -> int:
        return self.catalogs if self.catalogs is not None else max(3, self.users // 2000)


@dataclass
class Tenant:
    """A generated tenant: the emulator's directory plus what the CSV and the churn need."""

    spec: TenantSpec
    directory: Directory
    ids: list[str]  # every user ever created, in creation order
    upns: dict[str, str]
    counts: Counter[str]


def build(spec: TenantSpec) -> Tenant:
    """The directory of ``spec`` (users, disabled, soft- and hard-deleted), deterministic."""
    directory = Directory()
    ids = directory.add_users(spec.users, seed=spec.seed, disabled_fraction=spec.disabled, guest_fraction=spec.guests)
    upns = {uid: directory.get(uid)["userPrincipalName"] for uid in ids}  # type: ignore[index]
    rng = random.Random(spec.seed * 7919 + 1)
    n_soft = round(spec.users * spec.soft_deleted)
    n_hard = round(spec.users * spec.hard_deleted)
    gone = rng.sample(ids, n_soft + n_hard) if n_soft + n_hard <= len(ids) else []
    for uid in gone[:n_soft]:
        directory.soft_delete(uid)
    for uid in gone[n_soft:]:
        directory.hard_delete(uid)
    counts: Counter[str] = Counter(users=len(ids), soft_deleted=n_soft, hard_deleted=n_hard)
    counts["disabled"] = sum(1 for u in directory.active_users() if not u["accountEnabled"])
    counts["active"] = len(directory)
    return Tenant(spec, directory, ids, upns, counts)


def courses_of(spec: TenantSpec) -> list[tuple[str, str, str, str, str]]:
    """``(catalog_id, catalog_name, course_id, course_title, status)`` for every course."""
    rng = random.Random(spec.seed * 104729 + 2)
    out = []
    for c in range(spec.n_catalogs):
        cat_id, cat_name = f"cat-{c:05d}", f"Catalog {c}"
        for k in range(spec.courses_per_catalog):
            r = rng.random()
            status = (
                "deleted"
                if r < spec.deleted_courses
                else "unpublished"
                if r < spec.deleted_courses + spec.unpublished
                else "published"
            )
            out.append((cat_id, cat_name, f"crs-{c:05d}-{k:02d}", f"Course {c}.{k}", status))
    return out


def write_enrollments(tenant: Tenant, path: Path, now: datetime = NOW) -> Counter[str]:
    """The LMS export (SPEC §5 header) for this tenant; returns counts (rows, enrollments, admins...)."""
    spec = tenant.spec
    rng = random.Random(spec.seed * 15485863 + 3)
    courses = courses_of(spec)
    per_cat = spec.courses_per_catalog
    n_cat = spec.n_catalogs
    stamps = [(now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in range(1, 366)]
    expiries = [(now + timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in range(30, 400)]
    counts: Counter[str] = Counter()
    enrolled_users = set()
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_HEADER)
        rows: list[tuple[str, ...]] = []
        for uid in tenant.ids:
            upn = tenant.upns[uid]
            if rng.random() < spec.enrolled:
                k = rng.randint(1, spec.max_courses)
                home = rng.randrange(n_cat)
                pool = courses[home * per_cat : (home + 1) * per_cat]
                if n_cat > 1 and k > 2:  # a second catalog for the keen ones
                    other = (home + 1 + rng.randrange(n_cat - 1)) % n_cat
                    pool = pool + courses[other * per_cat : (other + 1) * per_cat]
                for cat, cat_name, course, title, status in rng.sample(pool, min(k, len(pool))):
                    expires = rng.choice(expiries) if rng.random() < 0.2 else ""
                    rows.append(
                        (cat, cat_name, course, title, status, uid, upn, "learner", rng.choice(stamps), expires)
                    )
                    counts["enrollments"] += 1
                    if status == "deleted":
                        counts["enrollments_in_deleted_courses"] += 1
                enrolled_users.add(uid)
            if rng.random() < spec.admins:
                cat, cat_name, course, title, status = rng.choice(courses)
                rows.append((cat, cat_name, course, title, status, uid, upn, "admin", rng.choice(stamps), ""))
                counts["admin_assignments"] += 1
            if len(rows) >= 50_000:
                w.writerows(rows)
                rows.clear()
        w.writerows(rows)
    counts["rows"] = counts["enrollments"] + counts["admin_assignments"]
    counts["enrolled_users"] = len(enrolled_users)
    counts["catalogs"] = n_cat
    counts["courses"] = len(courses)
    counts["courses_unpublished"] = sum(1 for c in courses if c[4] == "unpublished")
    counts["courses_deleted"] = sum(1 for c in courses if c[4] == "deleted")
    return counts


def churn(tenant: Tenant, k: int, seed: int) -> Counter[str]:
    """Apply ``k`` directory changes, each to a distinct user (see the module doc for the mix)."""
    d = tenant.directory
    rng = random.Random(seed * 32452843 + 4)
    active = d.active_users()
    enabled = [u["id"] for u in active if u["accountEnabled"]]
    disabled = [u["id"] for u in active if not u["accountEnabled"]]
    soft = [u["id"] for u, _at in d.soft_deleted()]
    rng.shuffle(enabled)
    rng.shuffle(disabled)
    rng.shuffle(soft)
    want = {op: int(k * share) for op, share in CHURN_MIX}
    want["rename"] += k - sum(want.values())
    done: Counter[str] = Counter()
    serial = d.version
    # Enabled users feed disable, soft_delete, hard_delete and rename; pools are disjoint slices.
    for op in ("restore", "enable"):
        pool = soft if op == "restore" else disabled
        n = min(want[op], len(pool))
        want["rename"] += want[op] - n
        for uid in pool[:n]:
            d.restore(uid) if op == "restore" else d.enable(uid)
        done[op] = n
    it = iter(enabled)
    for op in ("disable", "soft_delete", "hard_delete", "rename"):
        for _ in range(want[op]):
            uid = next(it, None)
            if uid is None:
                break
            if op == "rename":
                serial += 1
                local = f"renamed{serial}.{uid[:8]}"
                d.update_user(
                    uid,
                    displayName=f"Renamed {serial}",
                    userPrincipalName=f"{local}@contoso.example",
                    mail=f"{local}@contoso.example",
                )
            else:
                getattr(d, op)(uid)
            done[op] += 1
    done["total"] = sum(done.values())
    return done


# --------------------------------------------------------------------------- entry points


def _spec_from(args: argparse.Namespace) -> TenantSpec:
    return TenantSpec(users=args.users, seed=args.seed, enrolled=args.enrolled_fraction, catalogs=args.catalogs)


def serve(args: argparse.Namespace) -> int:
    """Run the Graph emulator with this tenant in this process; JSON commands on stdin."""
    from licsync.graph.emulator import EmulatorServer

    started = time.perf_counter()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tenant = build(_spec_from(args))
    csv_path = workdir / "enrollments.csv"
    csv_counts = write_enrollments(tenant, csv_path) if not args.no_csv else Counter()
    server = EmulatorServer(tenant.directory, workdir=workdir)
    server.emulator.page_size = args.page_size
    pages = tenant.directory.prerender(page_size=args.page_size)
    lock = threading.Lock()
    with server:
        secret = workdir / "client.secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(server.client_secret)
        info = {
            "graph_url": server.graph_url,
            "authority": server.authority,
            "ca_bundle": str(server.ca_bundle),
            "tenant_id": server.tenant_id,
            "client_id": server.client_id,
            "client_secret_file": str(secret),
            "csv": str(csv_path) if not args.no_csv else None,
            "spec": asdict(tenant.spec),
            "directory": dict(tenant.counts),
            "enrollments": dict(csv_counts),
            "prerendered_pages": pages,
            "ready_s": round(time.perf_counter() - started, 2),
            "control_url": f"{server.base_url}/_emulator/{server.tenant_id}",
            "pid": os.getpid(),
        }
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
        sys.stdout.flush()
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = orjson.loads(line)
            op = cmd.get("op")
            with lock:
                if op == "churn":
                    reply: dict[str, Any] = {"churn": dict(churn(tenant, int(cmd["k"]), int(cmd.get("seed", 1))))}
                elif op == "prerender":
                    reply = {"pages": tenant.directory.prerender(page_size=args.page_size)}
                elif op == "realism":  # {"op": "realism", "realism": {...} | null}: a real tenant's limits
                    server.emulator.realism = cmd.get("realism")
                    reply = {"realism": cmd.get("realism")}
                elif op == "stats":
                    reply = {"stats": dict(server.emulator.stats), "active": len(tenant.directory)}
                elif op == "quit":
                    break
                else:
                    reply = {"error": f"unknown op {op!r}"}
            sys.stdout.write(orjson.dumps(reply).decode() + "\n")
            sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("csv", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--users", type=int, required=True)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--enrolled-fraction", type=float, default=0.80)
        p.add_argument("--catalogs", type=int, default=None)
        if name == "csv":
            p.add_argument("--out", type=Path, required=True)
        else:
            p.add_argument("--workdir", type=Path, required=True)
            p.add_argument("--page-size", type=int, default=200)
            p.add_argument("--no-csv", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "csv":
        tenant = build(_spec_from(args))
        counts = write_enrollments(tenant, args.out)
        print(orjson.dumps({"directory": dict(tenant.counts), "enrollments": dict(counts)}).decode())
        return 0
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
