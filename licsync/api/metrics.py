"""``GET /metrics``: Prometheus text exposition (format 0.0.4), computed from the database.

Why no ``prometheus_client``: every figure here is a fact in the shared database (cycles, seats,
grace, outbox), not a counter kept in one process's memory. Read at scrape time, every replica
reports the same numbers and a restart loses nothing; a registry of in-process collectors would add
a dependency and buy nothing. The format is small enough to write (and a test parses it back).

Cycle duration, Graph requests and retries come from ``SyncCycle.summary`` (JSON), aggregated in
SQL (``json_extract`` on SQLite, ``->>`` on PostgreSQL through SQLAlchemy's JSON type), so a scrape
stays one round trip per family however many cycles are stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from licsync import status
from licsync.config import Settings
from licsync.db.models import Heartbeat, OutboxMessage, Seat, Subscription, SyncCycle, SyncState
from licsync.scheduler import QUARANTINE_AFTER
from licsync.subscriptions import registry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LEASE_PREFIX = "lease:"  # heartbeat rows that are tenant leases (SQLite), not daemons

_C = SyncCycle.__table__  # type: ignore[attr-defined]
_S = Seat.__table__  # type: ignore[attr-defined]
_O = OutboxMessage.__table__  # type: ignore[attr-defined]
_SUB = Subscription.__table__  # type: ignore[attr-defined]
_ST = SyncState.__table__  # type: ignore[attr-defined]
_H = Heartbeat.__table__  # type: ignore[attr-defined]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class Exposition:
    """Collects metric families and renders them in the text format."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float | int]], suffix: str = "") -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.sample(name + suffix, labels, value)

    def sample(self, name: str, labels: dict[str, str], value: float | int) -> None:
        lab = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        self._lines.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def _tenants(session: Session, settings: Settings) -> list[str]:
    names = {t.name for t in settings.tenant}
    conn = session.connection()
    names.update(r[0] for r in conn.execute(select(_SUB.c.tenant).where(_SUB.c.tenant.is_not(None)).distinct()))
    names.update(r[0] for r in conn.execute(select(_ST.c.tenant)))
    return sorted(names)


def _cycle_families(out: Exposition, session: Session) -> None:
    conn = session.connection()
    rows = conn.execute(select(_C.c.tenant, _C.c.kind, _C.c.status, func.count()).group_by(
        _C.c.tenant, _C.c.kind, _C.c.status))
    out.family("licsync_sync_cycles_total", "counter", "Sync cycles by tenant, kind and final status.",
               (({"tenant": t, "kind": k, "status": s}, n) for t, k, s, n in rows))

    dur = _C.c.summary["duration_s"].as_float()
    done = _C.c.status.in_(("ok", "held"))
    cols: list[Any] = [func.sum(case((dur <= b, 1), else_=0)) for b in DURATION_BUCKETS]
    hist = conn.execute(select(_C.c.tenant, func.count(), func.coalesce(func.sum(dur), 0.0), *cols)
                        .where(done, dur.is_not(None)).group_by(_C.c.tenant)).all()
    out.family("licsync_sync_cycle_duration_seconds", "histogram", "Duration of completed sync cycles.", ())
    for tenant, count, total, *buckets in hist:
        for b, n in zip(DURATION_BUCKETS, buckets, strict=True):
            out.sample("licsync_sync_cycle_duration_seconds_bucket", {"tenant": tenant, "le": _num(b)}, int(n or 0))
        out.sample("licsync_sync_cycle_duration_seconds_bucket", {"tenant": tenant, "le": "+Inf"}, int(count))
        out.sample("licsync_sync_cycle_duration_seconds_sum", {"tenant": tenant}, float(total or 0.0))
        out.sample("licsync_sync_cycle_duration_seconds_count", {"tenant": tenant}, int(count))

    req, ret = _C.c.summary["graph_requests"].as_integer(), _C.c.summary["retries"].as_integer()
    graph = conn.execute(select(_C.c.tenant, func.coalesce(func.sum(req), 0), func.coalesce(func.sum(ret), 0))
                         .where(_C.c.summary.is_not(None)).group_by(_C.c.tenant)).all()
    out.family("licsync_graph_requests_total", "counter", "Microsoft Graph requests made by sync cycles.",
               (({"tenant": t}, int(r)) for t, r, _ in graph))
    out.family("licsync_graph_retries_total", "counter", "Microsoft Graph requests retried (throttling, 5xx).",
               (({"tenant": t}, int(r)) for t, _, r in graph))


def render_metrics(session: Session, settings: Settings, now: datetime) -> str:
    out = Exposition()
    conn = session.connection()
    tenants = _tenants(session, settings)
    out.family("licsync_up", "gauge", "1 when the database answered this scrape.", [({}, 1)])
    _cycle_families(out, session)

    states = {r[0]: r for r in conn.execute(
        select(_ST.c.tenant, _ST.c.consecutive_failures, _ST.c.last_success_at))}
    out.family("licsync_sync_consecutive_failures", "gauge", "Failed cycles since the last success.",
               (({"tenant": t}, int(states[t][1] or 0)) for t in tenants if t in states))
    out.family("licsync_sync_quarantined", "gauge",
               f"1 when a tenant's sync failed {QUARANTINE_AFTER} or more times in a row (backed off to daily).",
               (({"tenant": t}, int((states[t][1] or 0) >= QUARANTINE_AFTER)) for t in tenants if t in states))
    out.family("licsync_sync_last_success_timestamp_seconds", "gauge", "Unix time of the last successful cycle.",
               (({"tenant": t}, states[t][2].timestamp()) for t in tenants if t in states and states[t][2]))

    # The seat model's figures, as status and the dashboard show them (tier upgrades, role pools).
    pools = {t: status.seat_figures(session, t, now) for t in tenants}
    out.family("licsync_seats_purchased", "gauge", "Seats purchased (a tier upgrade or role pools included).",
               (({"tenant": t}, int(pools[t]["purchased"])) for t in tenants))
    out.family("licsync_seats_consumed", "gauge", "Seats held now.",
               (({"tenant": t}, int(pools[t]["consumed"])) for t in tenants))
    out.family("licsync_seats_available", "gauge", "Purchased minus consumed (negative in overage).",
               (({"tenant": t}, int(pools[t]["available"])) for t in tenants))

    grace = {t: registry.current_grace(session, t, now) for t in tenants}
    out.family("licsync_grace_state", "gauge", "1 for the tenant's grace state as of now (none|active|enforced).",
               (({"tenant": t, "state": s}, int(grace[t].state == s)) for t in tenants
                for s in ("none", "active", "enforced")))
    out.family("licsync_grace_ends_timestamp_seconds", "gauge", "Unix time the tenant's grace window ends.",
               (({"tenant": t}, grace[t].ends_at.timestamp()) for t in tenants  # type: ignore[union-attr]
                if grace[t].state != "none" and grace[t].ends_at is not None))

    backlog = dict(conn.execute(select(_O.c.status, func.count()).group_by(_O.c.status)).all())
    out.family("licsync_outbox_messages", "gauge", "Notification outbox messages by status.",
               (({"status": s}, int(backlog.get(s, 0))) for s in sorted({"pending", "sending", "sent", "failed"}
                                                                         | set(backlog))))

    real_now = datetime.now(UTC)  # heartbeats are wall-clock facts, whatever instant the API evaluates
    beats = conn.execute(select(_H.c.instance, _H.c.beat_at).where(_H.c.instance.not_like(LEASE_PREFIX + "%")))
    out.family("licsync_heartbeat_age_seconds", "gauge", "Seconds since each daemon's last heartbeat.",
               (({"instance": i}, max(0.0, round((real_now - at).total_seconds(), 3))) for i, at in beats))
    return out.render()
