"""Which notifications an event deserves, decided and queued in the caller's transaction.

Every function takes the caller's session and writes outbox rows (and NotificationMarks) there,
never committing: a notification exists exactly when the change that caused it does. Each is
safe to call on every cycle — the idempotency keys and marks make a repeat queue nothing — and
returns how many messages it queued.

A successful sync cycle calls :func:`on_cycle` after applying its plan and evaluating grace;
anything else that moves seats or terms (an approved hold, an activation, the between-cycles grace
job) calls :func:`on_change`; the failure path calls :func:`sync_failed`; activation calls
:func:`subscription_moved` when it took a subscription from another tenant. Who receives what is
decided in ``licsync.notify.audience``.

Rules, and why:

* **Thresholds** announce upward crossings only, the highest newly crossed one (a jump from 70 %
  to 95 % is one message, about 90 %). The highest announced threshold is remembered per
  subscription; falling below a threshold re-arms it. The key carries the day, so usage that
  hovers around a threshold is announced at most once a day.
* **Grace**: started (also when renewed terms reopen an enforced window), a reminder at the
  halfway point, "ends tomorrow" in the last 24 hours, enforced, and ended. A reminder whose moment
  had already passed when the start was announced is not sent (the start message said it all), so
  a window first seen late gets the start message and, at most, the reminders still ahead.
* **Expiry** warnings 30, 7 and 1 day(s) before the expiry instant: the nearest one that applies,
  once per subscription and expiry instant (a renewal moves the instant and re-arms them all).
* **Sync failing**: once per failure streak, when it reaches ``FAILURE_STREAK`` cycles in a row;
  the first successful cycle after an announced streak sends "recovered".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlmodel import Session, col, select

from licsync.db.models import MassFreeHold, OutboxMessage
from licsync.errors import ConfigError, NotFound, truncate
from licsync.log import get_logger
from licsync.notify.audience import (
    Figures,
    audiences,
    get_mark,
    mark_name,
    set_mark,
    tenant_config,
)
from licsync.notify.outbox import enqueue, idempotency_key, unique_addresses
from licsync.notify.render import render
from licsync.subscriptions import registry

if TYPE_CHECKING:
    from licsync.config import Settings
    from licsync.subscriptions.grace import GraceRecord, Transition

FAILURE_STREAK = 3
EXPIRY_WARNINGS = (1, 7, 30)  # days before the expiry instant, nearest first
_DAY = timedelta(days=1)


def _iso(dt: datetime | None) -> str:
    return "-" if dt is None else dt.isoformat().replace("+00:00", "Z")


def _subscription(f: Figures | None) -> dict[str, Any] | None:
    if f is None or f.subscription_id is None:
        return None
    return {"id": f.subscription_id, "customer": f.customer, "seats": f.seats, "starts_at": f.starts_at,
            "ends_at": f.ends_at, "grace_days": f.grace_days}


def _announce(
    session: Session,
    settings: Settings,
    tenant: str,
    event: str,
    key_parts: Sequence[object],
    now: datetime,
    *,
    figures: Figures | None = None,
    extra: dict[str, Any] | None = None,
    catalog_admins: bool = False,
) -> int:
    """Render the event once per audience and queue it; catalog admins see only their catalogs."""
    tcfg = tenant_config(settings, tenant)
    if tcfg is None:
        get_logger(tenant=tenant).warning("notification_unaddressed", notification=event,
                                          note="tenant not in the configuration")
        return 0
    admins = unique_addresses(tcfg.admins)
    queued = 0
    for aud in audiences(session, tcfg, with_catalog_admins=catalog_admins and figures is not None):
        view = figures if figures is None or aud.kind == "tenant" else figures.only(aud.catalogs)
        ctx: dict[str, Any] = {
            "tenant": tenant, "audience": aud.kind, "now": now,
            "contacts": admins if aud.kind == "catalog" else [],
            "figures": None if view is None else view.as_context(),
            "catalogs": [] if view is None else list(view.catalogs),
            "subscription": _subscription(view),
            **(extra or {}),
        }
        r = render(event, ctx)
        queued += enqueue(session, event=event, tenant=tenant, recipients=aud.recipients, subject=r.subject,
                          text=r.text, html=r.html, key_parts=key_parts, now=now)
    if queued:
        get_logger(tenant=tenant).info("notification_queued", notification=event, messages=queued)
    return queued


# --------------------------------------------------------------------------- the cycle


def on_change(session: Session, settings: Settings, tenant: str, *, transitions: Sequence[Transition],
              now: datetime, figures: Figures) -> int:
    """Grace transitions and reminders, thresholds and expiry warnings, after anything that may move them.

    Call in the same session after ``registry.evaluate_grace`` returned ``transitions``: after a
    cycle's apply, an approved hold, an activation or renewal, or the between-cycles grace job.
    ``figures`` are the step's (:func:`load_figures` with the seat model's figures). Says nothing
    about the sync's health (see
    :func:`on_cycle`), so the grace job cannot announce a recovery that did not happen.
    """
    f = figures
    n = grace_transitions(session, settings, tenant, f, transitions, now)
    if f.subscription_id is not None:
        n += grace_reminders(session, settings, tenant, f, registry.grace_record(session, tenant, f.subscription_id),
                             now)
    n += usage_thresholds(session, settings, tenant, f, now)
    n += expiry_warnings(session, settings, tenant, f, now)
    return n


def on_cycle(session: Session, settings: Settings, tenant: str, *, transitions: Sequence[Transition],
             now: datetime, figures: Figures, hold_id: str | None = None) -> int:
    """Everything a *successful* sync cycle announces: :func:`on_change`, a held mass free, recovery.

    Call after the plan is applied and ``registry.evaluate_grace`` ran, in the cycle's session.
    """
    n = on_change(session, settings, tenant, transitions=transitions, now=now, figures=figures)
    if hold_id is not None:
        n += mass_free_held(session, settings, tenant, hold_id=hold_id, now=now, figures=figures)
    return n + sync_succeeded(session, settings, tenant, now)


def usage_thresholds(session: Session, settings: Settings, tenant: str, figures: Figures, now: datetime) -> int:
    """Announce the highest threshold newly crossed upwards; re-arm thresholds usage fell below."""
    pct = figures.usage_pct
    if pct is None or figures.subscription_id is None:
        return 0
    crossed = max((t for t in settings.notifications.thresholds if pct >= t), default=0)
    name = mark_name("usage", figures.subscription_id)
    last = int(get_mark(session, tenant, name) or 0)
    if crossed == last:
        return 0
    set_mark(session, tenant, name, str(crossed) if crossed else None, now)
    if crossed < last:
        return 0  # fell below: re-armed, nothing to say
    return _announce(session, settings, tenant, "usage_threshold", (figures.subscription_id, crossed, now.date()),
                     now, figures=figures, extra={"threshold": crossed}, catalog_admins=True)


def grace_transitions(session: Session, settings: Settings, tenant: str, figures: Figures,
                      transitions: Sequence[Transition], now: datetime) -> int:
    """One message per grace transition: started, enforced or ended."""
    sub = figures.subscription_id or "-"
    n = 0
    for t in transitions:
        extra = {"reason": t.reason, "started_at": t.started_at, "ends_at": t.ends_at,
                 "reopened": t.from_state == "enforced", "replaced": t.from_state == "active" and t.kind == "started",
                 "days_left": _days_left(t.ends_at, now)}
        if t.kind == "started":
            n += _announce(session, settings, tenant, "grace_started", (sub, t.reason, _iso(t.started_at),
                           _iso(t.ends_at)), now, figures=figures, extra=extra, catalog_admins=True)
            set_mark(session, tenant, mark_name("grace", sub), f"{_iso(t.started_at)}|{_iso(now)}", now)
        elif t.kind == "enforced":
            n += _announce(session, settings, tenant, "grace_enforced", (sub, t.reason, _iso(t.ends_at)), now,
                           figures=figures, extra=extra, catalog_admins=True)
        else:
            n += _announce(session, settings, tenant, "grace_ended", (sub, t.reason, _iso(t.started_at), now.date()),
                           now, figures=figures, extra=extra, catalog_admins=True)
            set_mark(session, tenant, mark_name("grace", sub), None, now)
    return n


def _days_left(ends_at: datetime | None, now: datetime) -> int:
    if ends_at is None or now >= ends_at:
        return 0
    return -((now - ends_at) // _DAY)  # whole days, rounded up


def grace_reminders(session: Session, settings: Settings, tenant: str, figures: Figures, record: GraceRecord,
                    now: datetime) -> int:
    """The halfway reminder and the last-day warning of an active window, each once."""
    if record.state != "active" or record.started_at is None or record.ends_at is None:
        return 0
    started, ends = record.started_at, record.ends_at
    if now >= ends or ends - started <= _DAY:
        return 0
    sub = figures.subscription_id or "-"
    stored = get_mark(session, tenant, mark_name("grace", sub)) or ""
    mark_start, _, announced = stored.partition("|")
    announced_at = datetime.fromisoformat(announced) if announced and mark_start == _iso(started) else None
    last_day, halfway = ends - _DAY, started + (ends - started) / 2
    if now >= last_day:
        event, moment = "grace_ends_tomorrow", last_day
    elif now >= halfway:
        event, moment = "grace_reminder", halfway
    else:
        return 0
    if announced_at is not None and announced_at >= moment:
        return 0  # the start message, sent after this moment, already told the whole story
    extra = {"reason": record.reason, "started_at": started, "ends_at": ends, "days_left": _days_left(ends, now),
             "reopened": False, "replaced": False}
    return _announce(session, settings, tenant, event, (sub, _iso(started), _iso(ends)), now, figures=figures,
                     extra=extra, catalog_admins=True)


def expiry_warnings(session: Session, settings: Settings, tenant: str, figures: Figures, now: datetime) -> int:
    """Warn 30, 7 and 1 day(s) before the expiry instant: the nearest applicable, once each."""
    ends = figures.ends_at
    if figures.subscription_id is None or ends is None or now >= ends:
        return 0
    days = next((d for d in EXPIRY_WARNINGS if ends - now <= d * _DAY), None)
    if days is None:
        return 0
    return _announce(session, settings, tenant, "subscription_expiring", (figures.subscription_id, _iso(ends), days),
                     now, figures=figures, extra={"days": days, "days_left": _days_left(ends, now)},
                     catalog_admins=True)


# --------------------------------------------------------------------------- other triggers


def subscription_moved(session: Session, settings: Settings, *, from_tenant: str, subscription_id: str,
                       customer: str, seats: int, now: datetime) -> int:
    """Tell the FIRST tenant's admins that activation elsewhere took the subscription away.

    The other tenant is not named: it is another organisation's business.
    """
    return _announce(session, settings, from_tenant, "subscription_moved", (subscription_id, _iso(now)), now,
                     extra={"subscription_id": subscription_id, "customer": customer, "seats": seats,
                            "moved_at": now})


def seats_forecast(session: Session, settings: Settings, tenant: str, *, forecast: dict[str, Any], within: bool,
                   now: datetime, figures: Figures | None = None) -> int:
    """Seats forecast to run out within ``forecast_days``: once per crossing into that window (the mark
    re-arms when the forecast leaves it). ``forecast`` is ``licsync.status.forecast_for``'s object."""
    name = mark_name("seats_forecast")
    crossed = get_mark(session, tenant, name)
    if not within:
        if crossed is not None:
            set_mark(session, tenant, name, None, now)
        return 0
    if crossed is not None:
        return 0
    set_mark(session, tenant, name, _iso(now), now)
    return _announce(session, settings, tenant, "seats_forecast", (forecast.get("runs_out_on"), _iso(now)), now,
                     figures=figures,
                     extra={"forecast": forecast, "forecast_days": settings.notifications.forecast_days})


def mass_free_held(session: Session, settings: Settings, tenant: str, *, hold_id: str, now: datetime,
                   frees: int | None = None, reason: str | None = None, figures: Figures | None = None) -> int:
    """A cycle's frees were held for approval: say how many, why, and the command that approves them.

    ``frees`` and ``reason`` default to the stored hold's.
    """
    if frees is None or reason is None:
        hold = session.get(MassFreeHold, hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id!r} to announce")
        frees = hold.frees if frees is None else frees
        reason = hold.reason if reason is None else reason
    return _announce(session, settings, tenant, "mass_free_held", (hold_id,), now, figures=figures,
                     extra={"hold_id": hold_id, "frees": frees, "reason": reason})


def sync_failed(session: Session, settings: Settings, tenant: str, *, failures: int, error: str,
                now: datetime) -> int:
    """Call with the consecutive failure count after recording a failed cycle; announces once per streak."""
    name = mark_name("sync_failing")
    if failures < FAILURE_STREAK or get_mark(session, tenant, name) is not None:
        return 0
    set_mark(session, tenant, name, _iso(now), now)
    return _announce(session, settings, tenant, "sync_failing", (_iso(now),), now,
                     extra={"failures": failures, "error": truncate(error, 500)})


def sync_succeeded(session: Session, settings: Settings, tenant: str, now: datetime) -> int:
    """After a successful cycle: "recovered", if a failure streak had been announced."""
    name = mark_name("sync_failing")
    since = get_mark(session, tenant, name)
    if since is None:
        return 0
    set_mark(session, tenant, name, None, now)
    return _announce(session, settings, tenant, "sync_recovered", (since,), now,
                     extra={"failing_since": datetime.fromisoformat(since)})


def overage(session: Session, settings: Settings, tenant: str, figures: Figures, *,
            tier: Literal["minor", "major"], since: datetime, now: datetime,
            upgrade_at: datetime | None = None) -> int:
    """Hook for the ``tiered`` overage mode (live_enrollment): minor/major, once per tier and episode.

    ``since`` starts the overage episode (its key); ``upgrade_at`` is when a major overage that
    is still present leads to the automatic upgrade (24 h after this notice), if it does.
    """
    return _announce(session, settings, tenant, "overage", (figures.subscription_id or "-", tier, _iso(since)), now,
                     figures=figures, extra={"tier": tier, "since": since, "upgrade_at": upgrade_at})


def send_test(session: Session, settings: Settings, tenant: str, now: datetime) -> list[int]:
    """Queue a test message to the tenant's admins; returns the outbox ids (to drain just those)."""
    tcfg = settings.get_tenant(tenant)  # an unknown tenant is a clear ConfigError
    if not tcfg.admins:
        raise ConfigError(f"tenant[{tenant}].admins is empty: nobody to send a test message to")
    parts = ("test", _iso(now), now.microsecond)
    _announce(session, settings, tenant, "test", parts, now,
              extra={"transport": settings.notifications.transport, "sender": settings.notifications.sender})
    keys = [idempotency_key("test", tenant, parts, a) for a in unique_addresses(tcfg.admins)]
    session.flush()
    rows = session.exec(select(OutboxMessage.id).where(col(OutboxMessage.idempotency_key).in_(keys)))
    return sorted(i for i in rows if i is not None)
