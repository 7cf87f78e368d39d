"""``GET /metrics``: Prometheus text exposition through ``prometheus_client``.

Two sources, one scrape:

* :class:`DatabaseCollector` — facts of the shared database, read at scrape time: cycles (count,
  duration histogram, Graph requests and retries from ``SyncCycle.summary``, aggregated in SQL so a
  scrape stays one round trip per family), consecutive failures and quarantine, seats (from
  :func:`licsync.status.seat_figures`, the one implementation status, the API and the dashboard
  show), grace, outbox depth and heartbeats. Every replica reads the same facts: aggregate them
  with ``max by (tenant)``, never ``sum``.
* :data:`licsync.metrics.REGISTRY` — this process's own histograms and counters (its cycles, Graph
  latency, 429s and retries, access-decision latency, outbox sends).

Every sample carries ``replica`` (``[api] replica``, else the host name — a pod's name under
Kubernetes), so the replicas' series never collide.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import metrics, status
from licsync.config import Settings
from licsync.db.models import Heartbeat, OutboxMessage, Subscription, SyncCycle, SyncState
from licsync.scheduler import QUARANTINE_AFTER

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LEASE_PREFIX = "lease:"  # heartbeat rows that are tenant leases (SQLite), not daemons
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")

_C = SyncCycle.__table__  # type: ignore[attr-defined]
_O = OutboxMessage.__table__  # type: ignore[attr-defined]
_SUB = Subscription.__table__  # type: ignore[attr-defined]
_ST = SyncState.__table__  # type: ignore[attr-defined]
_H = Heartbeat.__table__  # type: ignore[attr-defined]


def replica_name(settings: Settings) -> str:
    return settings.api.replica or socket.gethostname()


def _gauge(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        fam.add_metric(values, value)
    return fam


def _tenants(session: Session, settings: Settings) -> list[str]:
    names = {t.name for t in settings.tenant}
    conn = session.connection()
    names.update(r[0] for r in conn.execute(select(_SUB.c.tenant).where(_SUB.c.tenant.is_not(None)).distinct()))
    names.update(r[0] for r in conn.execute(select(_ST.c.tenant)))
    return sorted(names)


def _cycle_families(session: Session) -> Iterator[Metric]:
    conn = session.connection()
    cycles = CounterMetricFamily("licsync_sync_cycles", "Sync cycles by tenant, kind and final status.",
                                 labels=["tenant", "kind", "status"])
    for t, k, s, n in conn.execute(select(_C.c.tenant, _C.c.kind, _C.c.status, func.count())
                                   .group_by(_C.c.tenant, _C.c.kind, _C.c.status)):
        cycles.add_metric([t, k, s], n)
    yield cycles

    dur = _C.c.summary["duration_s"].as_float()
    done = _C.c.status.in_(("ok", "held"))
    cols: list[Any] = [func.sum(case((dur <= b, 1), else_=0)) for b in DURATION_BUCKETS]
    hist = HistogramMetricFamily("licsync_sync_cycle_duration_seconds", "Duration of completed sync cycles.",
                                 labels=["tenant"])
    for tenant, count, total, *buckets in conn.execute(
            select(_C.c.tenant, func.count(), func.coalesce(func.sum(dur), 0.0), *cols)
            .where(done, dur.is_not(None)).group_by(_C.c.tenant)):
        cumulative = [(str(b), int(n or 0)) for b, n in zip(DURATION_BUCKETS, buckets, strict=True)]
        hist.add_metric([tenant], [*cumulative, ("+Inf", int(count))], float(total or 0.0))
    yield hist

    req, ret = _C.c.summary["graph_requests"].as_integer(), _C.c.summary["retries"].as_integer()
    graph = conn.execute(select(_C.c.tenant, func.coalesce(func.sum(req), 0), func.coalesce(func.sum(ret), 0))
                         .where(_C.c.summary.is_not(None)).group_by(_C.c.tenant)).all()
    requests = CounterMetricFamily("licsync_graph_requests", "Microsoft Graph requests made by sync cycles.",
                                   labels=["tenant"])
    retries = CounterMetricFamily("licsync_graph_retries", "Microsoft Graph requests retried (throttling, 5xx).",
                                  labels=["tenant"])
    for t, r, rt in graph:
        requests.add_metric([t], int(r))
        retries.add_metric([t], int(rt))
    yield requests
    yield retries


def _tenant_families(session: Session, settings: Settings, now: datetime) -> Iterator[Metric]:
    conn = session.connection()
    tenants = _tenants(session, settings)
    states = {r[0]: r for r in conn.execute(
        select(_ST.c.tenant, _ST.c.consecutive_failures, _ST.c.last_success_at))}
    known = [t for t in tenants if t in states]
    yield _gauge("licsync_sync_consecutive_failures", "Failed cycles since the last success.", ["tenant"],
                 (([t], int(states[t][1] or 0)) for t in known))
    yield _gauge("licsync_sync_quarantined",
                 f"1 when a tenant's sync failed {QUARANTINE_AFTER} or more times in a row (backed off to daily).",
                 ["tenant"], (([t], int((states[t][1] or 0) >= QUARANTINE_AFTER)) for t in known))
    yield _gauge("licsync_sync_last_success_timestamp_seconds", "Unix time of the last successful cycle.",
                 ["tenant"], (([t], states[t][2].timestamp()) for t in known if states[t][2]))

    figures = {t: status.seat_figures(session, t, now) for t in tenants}  # the one implementation
    yield _gauge("licsync_seats_purchased", "Seats of the tenant's subscription (as status shows them).", ["tenant"],
                 (([t], f["purchased"]) for t, f in figures.items()))
    yield _gauge("licsync_seats_consumed", "Seats held now.", ["tenant"],
                 (([t], f["consumed"]) for t, f in figures.items()))
    yield _gauge("licsync_seats_available", "Purchased minus consumed (negative in overage).", ["tenant"],
                 (([t], f["available"]) for t, f in figures.items()))
    yield _gauge("licsync_grace_state", "1 for the tenant's grace state as of now (none|active|enforced).",
                 ["tenant", "state"], (([t, s], int(f["grace"]["state"] == s)) for t, f in figures.items()
                                       for s in ("none", "active", "enforced")))
    ends = ((t, f["grace"]["ends_at"]) for t, f in figures.items() if f["grace"]["state"] != "none")
    yield _gauge("licsync_grace_ends_timestamp_seconds", "Unix time the tenant's grace window ends.", ["tenant"],
                 (([t], datetime.fromisoformat(e.replace("Z", "+00:00")).timestamp()) for t, e in ends if e))


def _process_families(session: Session) -> Iterator[Metric]:
    conn = session.connection()
    backlog = dict(conn.execute(select(_O.c.status, func.count()).group_by(_O.c.status)).all())
    yield _gauge("licsync_outbox_messages", "Notification outbox messages by status.", ["status"],
                 (([s], int(backlog.get(s, 0))) for s in sorted(set(OUTBOX_STATUSES) | set(backlog))))
    real_now = datetime.now(UTC)  # heartbeats are wall-clock facts, whatever instant the API evaluates
    beats = conn.execute(select(_H.c.instance, _H.c.beat_at).where(_H.c.instance.not_like(LEASE_PREFIX + "%")))
    yield _gauge("licsync_heartbeat_age_seconds", "Seconds since each daemon's last heartbeat.", ["instance"],
                 (([i], max(0.0, round((real_now - at).total_seconds(), 3))) for i, at in beats))


class DatabaseCollector:
    """The database's figures, read once per scrape in one session."""

    def __init__(self, engine: Engine, settings: Settings, now: datetime) -> None:
        self.engine, self.settings, self.now = engine, settings, now

    def collect(self) -> Iterator[Metric]:
        with Session(self.engine) as session:
            yield _gauge("licsync_up", "1 when the database answered this scrape.", [], [([], 1)])
            yield from _cycle_families(session)
            yield from _tenant_families(session, self.settings, self.now)
            yield from _process_families(session)


class _Labelled:
    """Adds ``replica`` to every sample of the collectors it wraps."""

    def __init__(self, replica: str, *sources: Any) -> None:
        self.replica, self.sources = replica, sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            for fam in source.collect():
                fam.samples = [s._replace(labels={**s.labels, "replica": self.replica}) for s in fam.samples]
                yield fam


def render_metrics(engine: Engine, settings: Settings, now: datetime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Labelled(replica_name(settings), DatabaseCollector(engine, settings, now), metrics.REGISTRY))
    return generate_latest(registry)
