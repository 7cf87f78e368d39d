"""Many tenants × ``licsync run`` replicas on one PostgreSQL, for simulated hours (issue 14).

    python benchmarks/bench_replicas.py [--tenants 300] [--replicas 3] [--hours 1]

Runs ``tests/daemon/replica_sim.py`` (the real scheduler plan, its second look under the lock, the
real advisory locks; cycles of 5–90 simulated seconds) with and without the second look, and prints
the spread of cycles over the replicas, double cycles and missed intervals.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _harness as H

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from licsync import db
from tests.daemon.replica_sim import simulate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tenants", type=int, default=300)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--workdir", type=Path, help="unused: every run is in PostgreSQL (a schema of its own)")
    args = p.parse_args(argv)
    print(
        f"bench_replicas --tenants {args.tenants} --replicas {args.replicas} --hours {args.hours} — {H.machine_line()}"
    )
    rows = []
    for recheck in (True, False):
        with H.database("postgresql", Path(".")) as url:
            engine = db.get_engine(url)
            db.upgrade(engine)
            engine.dispose()
            t = time.perf_counter()
            r = simulate(url, tenants=args.tenants, replicas=args.replicas, hours=args.hours, recheck=recheck)
            wall = time.perf_counter() - t
        spread = " / ".join(f"{r.per_replica[i]:,}" for i in range(args.replicas))
        rows.append(
            [
                "yes (licsync)" if recheck else "no (control)",
                len(r.cycles),
                spread,
                len(r.doubles),
                len(r.missed),
                r.rechecks_saved,
                r.events,
                wall,
            ]
        )
        for line in (r.doubles + r.missed)[:5]:
            print(f"  {'' if recheck else '[control] '}{line}")
    print(
        H.table(
            [
                "second look under the lock",
                "cycles",
                "cycles per replica",
                "double cycles",
                "missed intervals",
                "cycles not run twice",
                "events",
                "wall s",
            ],
            rows,
            title=f"{args.tenants} tenants × {args.replicas} replicas, {args.hours:g} h simulated, "
            "sync_interval 15 min",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
