"""Subscriptions and grace state in the database: the adapter around ``keys`` and ``grace``.

Everything is written in the caller's session and never committed here: activation, its audit
rows and the notifications the caller enqueues commit (or roll back) as one transaction.

Storage notes (the ``subscription`` table has one row per subscription id):

* The row holds the newest verified key of the subscription and the tenant it is active on, so
  "active on one tenant at a time" is enforced by the primary key itself. Moving a subscription
  re-points the row to the new tenant; the first tenant's side of the move (who, when, and the
  terms it had) lives in its ``subscription_moved`` audit row, which ``subscription_summary``
  reads to report that tenant's subscription as ``deactivated``.
* Terms are read from the stored *signed key*, not from the convenience columns, so an edited
  column cannot grant seats. Pass ``public_key_b64`` to ``active_subscription`` to re-verify.

Activation rules:

* A key older than the stored one (``issued_at`` earlier) is refused everywhere: an older key
  never replaces a newer one, not even by moving to another tenant.
* The identical key (same ``issued_at``) re-activated on the tenant where it is already active is
  a no-op: the result says ``already_active`` (since when) and nothing is written; on another tenant
  it moves the subscription there; on a tenant where it was deactivated (replaced by another
  subscription) it re-activates it.
* A key that has already expired is accepted and activated: its expiry grace runs from the expiry
  instant (possibly already enforced). The result says so, for the CLI to warn the admin. Keys that
  have not started yet are accepted too (``not_started`` in the result).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_
from sqlmodel import Session, col, select

from licsync.db.models import AuditLog, GraceState, Seat, Subscription
from licsync.errors import InputError
from licsync.subscriptions import grace as grace_mod
from licsync.subscriptions import keys, leases
from licsync.subscriptions.grace import NO_GRACE, NO_LEASE, GraceRecord, Transition
from licsync.subscriptions.keys import Terms


@dataclass(frozen=True)
class ActivationResult:
    """What activation did, for the CLI to print and the caller to notify."""

    tenant: str
    terms: Terms
    outcome: str  # activated | reactivated | renewed | moved | already_active (nothing written)
    sentence: str
    previous_tenant: str | None = None  # the subscription was moved away from it: notify its admins
    replaced_subscription_id: str | None = None  # another subscription deactivated on this tenant
    expired: bool = False  # already expired at activation: expiry grace applies at once
    not_started: bool = False
    since: datetime | None = None  # already_active: when it was activated


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def _when(dt: datetime | None) -> str:
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M UTC")


def _audit(session: Session, *, now: datetime, tenant: str | None, actor: str, action: str, subject: str,
           detail: dict[str, Any], cycle_id: int | None = None) -> None:
    session.add(AuditLog(at=now, tenant=tenant, cycle_id=cycle_id, actor=actor, action=action, subject=subject,
                         detail=detail))


audit = _audit  # for the activation-authority side (licsync.leasing), which audits into the same log


def _terms_detail(terms: Terms) -> dict[str, Any]:
    return {"subscription_id": terms.id, "customer": terms.customer, "seats": terms.seats,
            "starts_at": _iso(terms.starts_at), "ends_at": _iso(terms.ends_at),
            "issued_at": _iso(terms.issued_at), "policy": terms.policy, "overage": terms.overage,
            "grace_days": terms.grace_days}


def activate(session: Session, tenant: str, key_text: str, public_key_b64: str | None, now: datetime,
             actor: str = "cli") -> ActivationResult:
    """Verify ``key_text`` and make it the active subscription of ``tenant`` (rules: module doc).

    Raises InputError (bad key, older or identical key) or ConfigError (bad vendor public key);
    in both cases nothing was written.
    """
    terms = keys.verify(key_text, public_key_b64)
    key = keys.normalize(key_text)
    row = session.get(Subscription, terms.id, with_for_update=True)
    if row is not None:
        _refuse_stale(row, terms, tenant)
        if terms.issued_at == keys.read_unverified(row.key).issued_at and row.state == "active" \
                and row.tenant == tenant:
            return _with_sentence(ActivationResult(tenant=tenant, terms=terms, outcome="already_active",
                                                   sentence="", since=row.activated_at))
    previous_tenant = row.tenant if row is not None and row.state == "active" and row.tenant != tenant else None
    renewed = row is not None and row.state == "active" and row.tenant == tenant

    replaced: str | None = None
    others = session.exec(select(Subscription).where(Subscription.tenant == tenant, Subscription.state == "active",
                                                     Subscription.id != terms.id).with_for_update()).all()
    for other in others:
        other.state, other.deactivated_at = "deactivated", now
        replaced = other.id
        _audit(session, now=now, tenant=tenant, actor=actor, action="subscription_replaced", subject=other.id,
               detail={"subscription_id": other.id, "replaced_by": terms.id, "actor": actor, "at": _iso(now)})

    detail = _terms_detail(terms) | {"actor": actor, "at": _iso(now)}
    if previous_tenant is not None:
        assert row is not None
        outcome = "moved"
        moved = detail | {"from_tenant": previous_tenant, "to_tenant": tenant,
                          "previous_terms": _terms_detail(keys.read_unverified(row.key))}
        for where in (previous_tenant, tenant):
            _audit(session, now=now, tenant=where, actor=actor, action="subscription_moved", subject=terms.id,
                   detail=moved)
    elif renewed:
        assert row is not None
        outcome = "renewed"
        _audit(session, now=now, tenant=tenant, actor=actor, action="subscription_renewed", subject=terms.id,
               detail=detail | {"previous_terms": _terms_detail(keys.read_unverified(row.key))})
    else:
        outcome = "activated" if row is None or row.tenant != tenant else "reactivated"
        _audit(session, now=now, tenant=tenant, actor=actor, action="subscription_activated", subject=terms.id,
               detail=detail)

    if not renewed:
        # A subscription moved away ends that tenant's grace window; one that arrives (or comes
        # back) is evaluated afresh from now (SPEC §2).
        for where in {tenant, previous_tenant} - {None}:
            session.exec(delete(GraceState).where(GraceState.tenant == where,  # type: ignore[call-overload]
                                                  GraceState.subscription_id == terms.id))
    if row is None:
        row = Subscription(id=terms.id, key=key)
        session.add(row)
    row.key, row.customer, row.seats = key, terms.customer, terms.seats
    row.starts_at, row.ends_at, row.issued_at = terms.starts_at, terms.ends_at, terms.issued_at
    row.policy, row.overage, row.grace_days = terms.policy, terms.overage, terms.grace_days
    row.extras = terms.to_payload()["extras"]
    if not renewed:
        row.activated_at = now
    row.tenant, row.state, row.deactivated_at = tenant, "active", None
    session.flush()

    result = ActivationResult(tenant=tenant, terms=terms, outcome=outcome, sentence="",
                              previous_tenant=previous_tenant, replaced_subscription_id=replaced,
                              expired=terms.expired(now), not_started=not terms.started(now))
    return _with_sentence(result)


def _refuse_stale(row: Subscription, terms: Terms, tenant: str) -> None:
    stored = keys.read_unverified(row.key)
    where = f"active on {row.tenant}" if row.state == "active" else f"deactivated on {row.tenant}"
    if terms.issued_at < stored.issued_at:
        raise InputError(f"subscription key refused: this key for {terms.id} was issued at {_when(terms.issued_at)}, "
                         f"before the stored one (issued at {_when(stored.issued_at)}, {where}); an older key "
                         "never replaces a newer one. Nothing changed; use the newest key from the vendor.")
    if terms.issued_at == stored.issued_at and terms != stored:
        raise InputError(f"subscription key refused: another key for {terms.id} with the same issue time "
                         f"({_when(terms.issued_at)}) and different terms is stored; ask the vendor for a newer key.")


def _with_sentence(r: ActivationResult) -> ActivationResult:
    t = r.terms
    what = {"activated": f"is now active on {r.tenant}", "reactivated": f"is active again on {r.tenant}",
            "renewed": f"is renewed on {r.tenant}", "moved": f"has moved to {r.tenant}",
            "already_active": f"is already active on {r.tenant} since {_when(r.since)}; nothing changed"}
    parts = [f"Subscription {t.id} ({t.customer}, {t.seats} seats, policy {t.policy}, valid from "
             f"{_when(t.starts_at)} until {_when(t.ends_at)}) {what[r.outcome]}."]
    if r.outcome == "already_active":
        return replace(r, sentence=parts[0])
    if r.previous_tenant:
        parts.append(f"It was deactivated on {r.previous_tenant}; that tenant's admins are notified.")
    if r.replaced_subscription_id:
        parts.append(f"It replaces subscription {r.replaced_subscription_id}, now deactivated on {r.tenant}.")
    if r.expired:
        parts.append(f"Warning: this key expired at {_when(t.ends_at)}; expiry grace runs from then and ends at "
                     f"{_when(t.ends_at + timedelta(days=t.grace_days))}.")
    if r.not_started:
        parts.append(f"Note: it starts at {_when(t.starts_at)}; no learner is licensed before then.")
    return replace(r, sentence=" ".join(parts))


def active_subscription(session: Session, tenant: str,
                        public_key_b64: str | None = None) -> tuple[Subscription, Terms] | None:
    """The tenant's active subscription and its terms (from the signed key), or None."""
    row = session.exec(select(Subscription).where(Subscription.tenant == tenant, Subscription.state == "active")
                       .order_by(col(Subscription.activated_at).desc())).first()
    if row is None:
        return None
    terms = keys.verify(row.key, public_key_b64) if public_key_b64 else keys.read_unverified(row.key)
    return row, with_grace_days(terms, row.grace_days)


def with_grace_days(terms: Terms, stored: int | None) -> Terms:
    """The key's terms with the grace window in force: ``[seats] grace_days`` may shorten the key's,
    never lengthen it (SPEC §2). The row keeps the shorter of the two (:func:`cap_grace_days`)."""
    if stored is None or stored >= terms.grace_days:
        return terms
    return replace(terms, grace_days=stored)


def cap_grace_days(session: Session, tenant: str, configured: int | None) -> None:
    """Keep the active subscription's window the shorter of the key's and the configuration's."""
    row = session.exec(select(Subscription).where(Subscription.tenant == tenant, Subscription.state == "active")
                       .order_by(col(Subscription.activated_at).desc())).first()
    if row is None:
        return
    key_days = keys.read_unverified(row.key).grace_days
    want = key_days if configured is None else min(key_days, configured)
    if row.grace_days != want:
        row.grace_days = want
        session.flush()


def subscription_state(terms: Terms | None, row: Subscription | None, now: datetime) -> str:
    """``active | deactivated | expired | none`` as in the status JSON (not started yet is active)."""
    if row is None or terms is None:
        return "none"
    if row.state == "deactivated":
        return "deactivated"
    return "expired" if terms.expired(now) else "active"


def _lease_view(session: Session, subscription_id: str | None) -> dict[str, Any]:
    """``lease_expires_at`` (SPEC §5) and, additively, the bound tenant id and why it stopped licensing;
    present only for a subscription activated through the authority or bound to a tenant."""
    row = leases.binding(session, subscription_id) if subscription_id else None
    if row is None:
        return {}
    return {"lease_expires_at": _iso(row.expires_at), "tenant_id": row.tenant_id, "lease_problem": row.problem}


def subscription_summary(session: Session, tenant: str, now: datetime) -> dict[str, Any]:
    """The ``subscription`` object of the status JSON, including a subscription moved or replaced away."""
    summary = _summary(session, tenant, now)
    return summary | _lease_view(session, summary["id"])


def _summary(session: Session, tenant: str, now: datetime) -> dict[str, Any]:
    found = active_subscription(session, tenant)
    if found is not None:
        row, terms = found
        return {"id": terms.id, "seats": terms.seats, "starts_at": _iso(terms.starts_at),
                "ends_at": _iso(terms.ends_at), "state": subscription_state(terms, row, now)}
    last: tuple[datetime, dict[str, Any]] | None = None
    replaced = session.exec(select(Subscription).where(Subscription.tenant == tenant,
                                                       Subscription.state == "deactivated")
                            .order_by(col(Subscription.deactivated_at).desc())).first()
    if replaced is not None and replaced.deactivated_at is not None:
        t = keys.read_unverified(replaced.key)
        last = (replaced.deactivated_at, {"id": t.id, "seats": t.seats, "starts_at": _iso(t.starts_at),
                                          "ends_at": _iso(t.ends_at)})
    moves = session.exec(select(AuditLog).where(AuditLog.tenant == tenant, AuditLog.action == "subscription_moved")
                         .order_by(col(AuditLog.seq).desc()).limit(50)).all()
    for audit in moves:
        d = audit.detail or {}
        if d.get("from_tenant") == tenant and audit.at is not None:
            if last is None or audit.at > last[0]:
                p = d.get("previous_terms") or d
                last = (audit.at, {"id": p.get("subscription_id"), "seats": p.get("seats"),
                                   "starts_at": p.get("starts_at"), "ends_at": p.get("ends_at")})
            break
    if last is None:
        return {"id": None, "seats": 0, "starts_at": None, "ends_at": None, "state": "none"}
    return last[1] | {"state": "deactivated"}


# --------------------------------------------------------------------------- grace


def _record(row: GraceState | None) -> GraceRecord:
    if row is None:
        return NO_GRACE
    return GraceRecord(row.state, row.reason, row.started_at, row.ends_at)


def grace_record(session: Session, tenant: str, subscription_id: str) -> GraceRecord:
    """The stored record, as the last cycle left it."""
    return _record(session.get(GraceState, (tenant, subscription_id)))


def lease_until(session: Session, subscription_id: str) -> datetime:
    """When the subscription's lease stops licensing here; ``NO_LEASE`` when activated without one."""
    return leases.lease_until(session, subscription_id) or NO_LEASE


def current_grace(session: Session, tenant: str, now: datetime) -> GraceRecord:
    """The record as of ``now`` for read paths (status, access): expiry, lease expiry and window ends
    apply at once."""
    found = active_subscription(session, tenant)
    if found is None:
        return NO_GRACE
    _row, terms = found
    return grace_mod.effective(terms, grace_record(session, tenant, terms.id), now, lease_until(session, terms.id))


def deactivate(session: Session, tenant: str, subscription_id: str, now: datetime, *, why: str,
               actor: str = "licsync") -> bool:
    """Stop the subscription licensing on ``tenant`` (the authority moved or revoked it, or its lease
    names another tenant). Audited as ``subscription_moved`` / ``subscription_refused``; its grace
    record is dropped, so a return is evaluated afresh. False when it was not active here."""
    row = session.get(Subscription, subscription_id, with_for_update=True)
    if row is None or row.tenant != tenant or row.state != "active":
        return False
    terms = keys.read_unverified(row.key)
    row.state, row.deactivated_at = "deactivated", now
    grace_row = session.get(GraceState, (tenant, subscription_id))
    if grace_row is not None:
        session.delete(grace_row)
    action = "subscription_moved" if why in ("moved", "revoked") else "subscription_refused"
    _audit(session, now=now, tenant=tenant, actor=actor, action=action, subject=subscription_id,
           detail=_terms_detail(terms) | {"from_tenant": tenant, "to_tenant": None, "why": why, "actor": actor,
                                          "at": _iso(now), "previous_terms": _terms_detail(terms)})
    session.flush()
    return True


def evaluate_grace(session: Session, tenant: str, consumed: int, now: datetime,
                   cycle_id: int | None = None, seats: int | None = None) -> list[Transition]:
    """Run the grace machine for the tenant's active subscription; store the record, audit each transition.

    ``consumed`` and ``seats`` are the seat model's figures (``seats``: purchased, a tier upgrade or
    the sum of pools included; None: the key's)."""
    found = active_subscription(session, tenant)
    if found is None:
        return []
    _row, terms = found
    if seats is not None and seats != terms.seats:
        terms = replace(terms, seats=seats)
    stored = session.get(GraceState, (tenant, terms.id), with_for_update=True)
    before = _record(stored)
    after, transitions = grace_mod.evaluate(terms, consumed, before, now, lease_until(session, terms.id))
    if after != before:
        if stored is None:
            stored = GraceState(tenant=tenant, subscription_id=terms.id)
            session.add(stored)
        stored.state, stored.reason = after.state, after.reason
        stored.started_at, stored.ends_at, stored.updated_at = after.started_at, after.ends_at, now
    for t in transitions:
        _audit(session, now=now, tenant=tenant, actor="licsync", action=t.action, subject=terms.id, cycle_id=cycle_id,
               detail={"from": t.from_state, "to": t.to_state, "reason": t.reason, "effective_at": _iso(t.at),
                       "started_at": _iso(t.started_at), "ends_at": _iso(t.ends_at), "consumed": consumed,
                       "seats": terms.seats, "sentence": t.sentence})
    session.flush()
    return transitions


def seat_rank(session: Session, tenant: str, holder: str) -> int | None:
    """1-based rank of the holder's open seat by (acquired_at, seat id), or None without a seat."""
    mine = session.exec(select(Seat).where(Seat.tenant == tenant, Seat.holder == holder,
                                           col(Seat.released_at).is_(None))).first()
    if mine is None:
        return None
    earlier = session.exec(select(func.count()).select_from(Seat).where(
        Seat.tenant == tenant, col(Seat.released_at).is_(None),
        or_(col(Seat.acquired_at) < mine.acquired_at,
            and_(col(Seat.acquired_at) == mine.acquired_at, col(Seat.id) < mine.id))))
    return int(earlier.one()) + 1
