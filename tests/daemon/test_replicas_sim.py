"""Tenants × ``licsync run`` replicas on one PostgreSQL for an hour of simulated time (issue 14):
every tenant synced once per interval, none twice, the work spread over the replicas.

The simulation (``replica_sim``) drives the real scheduler's plan, its second look under the lock
and the real advisory locks; ``benchmarks/bench_replicas.py`` runs it at 300 tenants.
"""

from __future__ import annotations

from licsync import db
from tests.daemon.replica_sim import simulate


def migrated(url: str) -> str:
    engine = db.get_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return url


def test_each_tenant_once_per_interval_spread_over_three_replicas(pg_schema_url: str) -> None:
    r = simulate(migrated(pg_schema_url), tenants=40, replicas=3, hours=1.0)
    assert r.doubles == [] and r.missed == []
    assert len(r.cycles) == 40 * 4  # 08:00, 08:15, 08:30, 08:45
    assert set(r.per_replica) == {0, 1, 2} and min(r.per_replica.values()) >= 20  # each replica does its share


def test_without_the_second_look_under_the_lock_a_cycle_runs_twice(pg_schema_url: str) -> None:
    """The control: a replica that planned while another's cycle was ending gets the lock within its
    3 s retry and, without looking again, runs the same cycle a second time."""
    r = simulate(migrated(pg_schema_url), tenants=10, replicas=3, hours=0.5, cycle_seconds=(60.5, 62.5), recheck=False)
    assert r.doubles
    fixed = simulate(migrated(pg_schema_url), tenants=10, replicas=3, hours=0.5, cycle_seconds=(60.5, 62.5))
    assert fixed.doubles == [] and fixed.rechecks_saved > 0
