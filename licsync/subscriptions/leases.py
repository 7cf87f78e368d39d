"""The deployment's record of what binds a subscription to one tenant: a lease, or a bound key.

Written in the caller's session, never committed here. Rules, and why:

* A lease is stored only after ``lease.check`` against what this deployment asked for
  (subscription, tenant id, deployment id) and the lease already held: a tampered, foreign-vendor,
  copied or replayed lease is refused with a sentence and changes nothing.
* Renewal is due once past half the lease's life; a failed attempt backs off exponentially
  (1 min, 2, 4 … capped at 1 h) so a down authority is not hammered by every cycle, and the
  lease keeps licensing to its expiry meanwhile.
* ``problem`` says why the subscription stopped licensing here (moved, revoked, wrong tenant); the
  status JSON shows it next to ``lease_expires_at``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlmodel import Session, select

from licsync.authority import lease as lease_mod
from licsync.db.models import SubscriptionLease
from licsync.errors import truncate

BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)


def deployment_id(session: Session) -> str:
    """This deployment's id (one per database): the one its leases carry, or a new one."""
    existing = session.exec(select(SubscriptionLease.deployment_id)
                            .where(SubscriptionLease.deployment_id.is_not(None))).first()  # type: ignore[union-attr]
    return existing or f"dep-{uuid.uuid4()}"


def binding(session: Session, subscription_id: str, *, for_update: bool = False) -> SubscriptionLease | None:
    return session.get(SubscriptionLease, subscription_id, with_for_update=for_update)


def stored_lease(row: SubscriptionLease | None) -> lease_mod.Lease | None:
    """The stored lease (verified when stored; the signed text is the truth, not the columns)."""
    if row is None or not row.lease:
        return None
    return lease_mod.read_unverified(row.lease)


def record_lease(session: Session, tenant: str, tenant_id: str, lease_text: str, public_key_b64: str | None,
                 now: datetime, *, subscription_id: str, deployment: str) -> lease_mod.Lease:
    """Verify and check a lease from the authority, then store it (replacing the older one)."""
    lease = lease_mod.verify(lease_text, public_key_b64)
    row = binding(session, subscription_id, for_update=True)
    newest = stored_lease(row) if row is not None and row.deployment_id == deployment else None
    lease_mod.check(lease, subscription_id=subscription_id, tenant_id=tenant_id, deployment_id=deployment,
                    now=now, newest=newest)
    if row is None:
        row = SubscriptionLease(subscription_id=subscription_id, tenant=tenant, tenant_id=lease.tenant_id)
        session.add(row)
    row.tenant, row.tenant_id, row.deployment_id = tenant, lease.tenant_id, deployment
    row.lease, row.issued_at, row.expires_at = "".join(lease_text.split()), lease.issued_at, lease.expires_at
    row.attempts, row.next_attempt_at, row.last_error, row.problem, row.updated_at = 0, None, None, None, now
    session.flush()
    return lease


def bind_tenant(session: Session, tenant: str, subscription_id: str, tenant_id: str, now: datetime) -> None:
    """A key issued with ``--tenant-id``: no lease, but the same tenant id check at every sync."""
    row = binding(session, subscription_id, for_update=True)
    if row is None:
        row = SubscriptionLease(subscription_id=subscription_id, tenant=tenant, tenant_id=tenant_id)
        session.add(row)
    row.tenant, row.tenant_id, row.lease, row.issued_at, row.expires_at = tenant, tenant_id, None, None, None
    row.attempts, row.next_attempt_at, row.last_error, row.problem, row.updated_at = 0, None, None, None, now
    session.flush()


def forget(session: Session, subscription_id: str) -> None:
    """The subscription was activated here by key alone: no lease or binding applies any more."""
    row = binding(session, subscription_id, for_update=True)
    if row is not None:
        session.delete(row)
        session.flush()


def lease_until(session: Session, subscription_id: str) -> datetime | None:
    """The instant the stored lease stops licensing (expiry + skew bound), or None without a lease."""
    row = binding(session, subscription_id)
    if row is None or not row.lease or row.expires_at is None:
        return None
    return row.expires_at + lease_mod.CLOCK_SKEW


def backoff(attempts: int) -> timedelta:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


def renewal_due(row: SubscriptionLease, now: datetime) -> bool:
    """Past half-life, and not inside the backoff of a failed attempt."""
    if not row.lease or row.issued_at is None or row.expires_at is None or row.problem:
        return False
    half = row.issued_at + (row.expires_at - row.issued_at) / 2
    return now >= half and (row.next_attempt_at is None or now >= row.next_attempt_at)


def record_failure(row: SubscriptionLease, now: datetime, error: str) -> None:
    row.attempts += 1
    row.next_attempt_at = now + backoff(row.attempts)
    row.last_error, row.updated_at = truncate(error, 500), now


def set_problem(row: SubscriptionLease, now: datetime, problem: str) -> None:
    row.problem, row.updated_at = truncate(problem, 500), now
