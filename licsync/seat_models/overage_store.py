"""Database adapter of the overage tiers (``tiered`` mode): state, notices, upgrades, and their status.

``evaluate_overage`` runs after every change of seats of a ``tiered`` subscription (and on each
cycle, so that the clock alone can turn a minor overage major or make an upgrade due). It writes,
in the caller's transaction:

* the episode in ``overage_tier_state``;
* one audit row per event — ``overage_minor``, ``overage_major``, ``overage_ended``,
  ``subscription_upgraded``, ``upgrade_unavailable`` — whose ``detail`` carries the figures;
* an automatic upgrade in ``subscription_upgrade``: from then on the tenant's effective seats are
  the new tier's (``ledger.purchased_seats``) for the rest of that license year.

It returns the events; the notifications hook turns ``overage_minor``/``overage_major`` into mail
(``licsync.notify.events.overage``). Business days are the tenant's: its ``timezone`` and
``holidays``, and ``[seats] holidays``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from licsync import ledger
from licsync.config import Settings
from licsync.db.models import AuditLog
from licsync.db.models_seat_models import OverageTierState, SubscriptionUpgrade
from licsync.errors import ConfigError
from licsync.seat_models import overage as tiers
from licsync.seat_models.business_days import BusinessCalendar
from licsync.subscriptions import registry
from licsync.subscriptions.terms import Terms


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def calendar(settings: Settings | None, tenant: str | None = None) -> BusinessCalendar:
    """The tenant's business calendar: its ``timezone``, its ``holidays`` and ``[seats] holidays``."""
    if settings is None:
        return BusinessCalendar()
    holidays = list(settings.seats.holidays)
    tz = "UTC"
    cfg = next((t for t in settings.tenant if t.name == tenant), None)
    if cfg is not None:
        holidays += list(cfg.holidays)
        tz = cfg.timezone
    try:
        return BusinessCalendar.from_config(holidays, UTC if tz == "UTC" else ZoneInfo(tz))
    except ValueError as exc:
        raise ConfigError(f"holidays: {exc}") from None


def _state(row: OverageTierState | None) -> tiers.TierState:
    if row is None:
        return tiers.NO_OVERAGE
    return tiers.TierState(row.since, row.minor_notice_at, row.major_notice_at, row.no_upgrade_at)


def _ladder(terms: Terms) -> tuple[int, ...]:
    return tuple(int(t) for t in terms.extras.get("tiers", ()))


def _event_detail(e: tiers.TierEvent, terms: Terms) -> dict[str, Any]:
    d: dict[str, Any] = {"subscription_id": terms.id, "consumed": e.consumed, "seats": e.seats,
                         "since": _iso(e.since), "upgrade_at": _iso(e.upgrade_at)}
    if e.seats > 0:
        d["usage_pct"] = round(100.0 * e.consumed / e.seats, 1)
    if e.upgrade is not None:
        u = e.upgrade
        d |= {"from_seats": u.from_seats, "to_seats": u.to_seats, "due_at": _iso(u.due_at),
              "effective_at": _iso(u.effective_at), "pro_rata": u.pro_rata, "days_left": u.days_left}
    return d


def evaluate_overage(session: Session, settings: Settings | None, tenant: str, now: datetime, *,
                     cycle_id: int | None = None) -> list[tiers.TierEvent]:
    """One evaluation for the tenant's ``tiered`` subscription; nothing for any other overage mode."""
    found = registry.active_subscription(session, tenant)
    if found is None or found[1].overage != "tiered":
        return []
    terms = found[1]
    if not terms.started(now):
        return []
    row = session.get(OverageTierState, (tenant, terms.id), with_for_update=True)
    before = _state(row)
    seats = ledger.purchased_seats(session, tenant, terms)
    consumed = ledger.consumed(session, tenant)
    after, events, _seats_after = tiers.step(before, consumed=consumed, seats=seats, ladder=_ladder(terms),
                                             starts_at=terms.starts_at, ends_at=terms.ends_at, now=now,
                                             cal=calendar(settings, tenant))
    v = tiers.view(consumed, _seats_after, after.since, now, calendar(settings, tenant))
    if row is None:
        row = OverageTierState(tenant=tenant, subscription_id=terms.id)
        session.add(row)
    if after != before or row.tier != v.tier:
        row.since, row.minor_notice_at, row.major_notice_at = after.since, after.minor_notice_at, after.major_notice_at
        row.no_upgrade_at, row.tier, row.updated_at = after.no_upgrade_at, v.tier, now
    for e in events:
        if e.upgrade is not None:
            u = e.upgrade
            session.add(SubscriptionUpgrade(tenant=tenant, subscription_id=terms.id, year_start=terms.starts_at,
                                            from_seats=u.from_seats, to_seats=u.to_seats, due_at=u.due_at,
                                            effective_at=u.effective_at, pro_rata=u.pro_rata,
                                            days_left=u.days_left))
        session.add(AuditLog(at=now, tenant=tenant, cycle_id=cycle_id, actor="licsync", action=e.kind,
                             subject=terms.id, detail=_event_detail(e, terms)))
    session.flush()
    return list(events)


def upgrades(session: Session, tenant: str, terms: Terms) -> list[dict[str, Any]]:
    rows = session.exec(select(SubscriptionUpgrade).where(
        SubscriptionUpgrade.tenant == tenant, SubscriptionUpgrade.subscription_id == terms.id,
        SubscriptionUpgrade.year_start == terms.starts_at).order_by(col(SubscriptionUpgrade.effective_at))).all()
    return [{"from_seats": u.from_seats, "to_seats": u.to_seats, "due_at": _iso(u.due_at),
             "effective_at": _iso(u.effective_at), "pro_rata": u.pro_rata, "days_left": u.days_left}
            for u in rows]


def tier_status(session: Session, settings: Settings | None, tenant: str, terms: Terms,
                now: datetime) -> dict[str, Any]:
    """The ``tier`` and ``upgrade`` blocks of a ``live_enrollment`` / ``tiered`` status (read-only)."""
    seats = ledger.purchased_seats(session, tenant, terms)
    consumed = ledger.consumed(session, tenant)
    row = session.get(OverageTierState, (tenant, terms.id))
    state = _state(row)
    v = tiers.view(consumed, seats, state.since, now, calendar(settings, tenant))
    done = upgrades(session, tenant, terms)
    pending = None
    if state.major_notice_at is not None and v.tier == "major":
        target = tiers.next_tier(_ladder(terms), seats)
        pending = {"due_at": _iso(state.major_notice_at + tiers.UPGRADE_AFTER), "to_seats": target,
                   "available": target is not None and now < terms.ends_at}
    return {
        "tier": {
            "mode": terms.overage, "state": v.tier, "why": v.why, "since": _iso(v.since),
            "business_days": v.business_days, "usage_pct": v.usage_pct, "remedy_by": _iso(v.remedy_by),
            "major_at": _iso(v.major_at), "overdue": v.overdue,
            "minor_notice_at": _iso(state.minor_notice_at), "major_notice_at": _iso(state.major_notice_at),
            "ladder": list(_ladder(terms)),
        },
        "upgrade": {"key_seats": terms.seats, "effective_seats": seats, "upgraded": bool(done),
                    "last": done[-1] if done else None, "history": done, "pending": pending},
    }
