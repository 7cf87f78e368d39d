"""The lease, pure: what a deployment takes and what it refuses (tampered, foreign, replayed, skewed)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from licsync.authority import lease as lease_mod
from licsync.db.models import SubscriptionLease
from licsync.errors import InputError
from licsync.subscriptions import keys, leases
from licsync.subscriptions.grace import NO_GRACE, NO_LEASE, GraceRecord, effective, evaluate
from licsync.subscriptions.terms import Terms

PRIVATE, PUBLIC = keys.generate_keypair()
OTHER_PRIVATE, _OTHER_PUBLIC = keys.generate_keypair()
TID = "2c6ffc20-1773-4b95-8ef4-1ae800a26dc5"
OTHER_TID = "0b1e6f1a-0000-4000-8000-000000000001"
T = datetime(2026, 12, 1, 12, tzinfo=UTC)
LEASE = lease_mod.new_lease("SUB-1", TID, "dep-1", T)
TEXT = lease_mod.sign(PRIVATE, LEASE)
SKEW = lease_mod.CLOCK_SKEW


def _check(lease: lease_mod.Lease, now: datetime = T, newest: lease_mod.Lease | None = None, **kw: str) -> None:
    want = {"subscription_id": "SUB-1", "tenant_id": TID, "deployment_id": "dep-1"} | kw
    lease_mod.check(lease, now=now, newest=newest, **want)


def _tamper(text: str, **changes: str) -> str:
    head, payload, sig = text.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{head}.{raw}.{sig}"


def test_a_signed_lease_verifies_and_holds_for_its_life() -> None:
    got = lease_mod.verify(TEXT, PUBLIC)
    assert got == LEASE and got.expires_at - got.issued_at == timedelta(days=7)
    assert got.renew_after == T + timedelta(days=3, hours=12)
    _check(got)
    assert lease_mod.holds(got, T + timedelta(days=7) + SKEW - timedelta(seconds=1))
    assert not lease_mod.holds(got, T + timedelta(days=7) + SKEW)


@pytest.mark.parametrize("text, needle", [
    (_tamper(TEXT, tenant_id=OTHER_TID), "does not verify"),  # tampered: another tenant
    (_tamper(TEXT, expires_at="2099-01-01T00:00:00Z"), "does not verify"),  # tampered: longer life
    (lease_mod.sign(OTHER_PRIVATE, LEASE), "does not verify"),  # signed by another vendor's key
    (keys.issue(PRIVATE, Terms(id="SUB-1", customer="C", seats=1, starts_at=T, ends_at=T + timedelta(days=9),
                               issued_at=T)), "not a LSL1 lease"),  # a subscription key is never a lease
    (TEXT[:-3], "does not verify"),
    ("LSL1.!!.??", "damaged"),
    ("x" * 5000, "far too long"),
])
def test_a_tampered_foreign_or_damaged_lease_is_refused(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        lease_mod.verify(text, PUBLIC)


@pytest.mark.parametrize("kw, now, needle", [
    ({"tenant_id": OTHER_TID}, T, "serves only the tenant"),
    ({"deployment_id": "dep-2"}, T, "another deployment"),
    ({"subscription_id": "SUB-2"}, T, "not SUB-2"),
    ({}, T - SKEW - timedelta(seconds=1), "fix this machine's clock"),  # this clock is behind the authority's
    ({}, T + timedelta(days=7) + SKEW, "expired"),
])
def test_a_lease_for_someone_else_or_out_of_time_is_refused(kw: dict[str, str], now: datetime, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        _check(LEASE, now, **kw)
    _check(LEASE, T - SKEW)  # within the skew bound: taken


def test_a_replayed_older_lease_is_refused() -> None:
    newer = lease_mod.new_lease("SUB-1", TID, "dep-1", T + timedelta(days=4))
    _check(newer, T + timedelta(days=4), newest=LEASE)
    with pytest.raises(InputError, match="replayed"):
        _check(LEASE, T + timedelta(days=4), newest=newer)


def test_clock_set_back_before_the_newest_lease_is_refused() -> None:
    """A customer who winds the clock back to stretch a lease meets the issue time of the newest one."""
    newest = lease_mod.new_lease("SUB-1", TID, "dep-1", T + timedelta(days=4))
    with pytest.raises(InputError, match="clock"):
        _check(newest, T + timedelta(days=1), newest=LEASE)


TERMS = Terms(id="SUB-1", customer="C", seats=10, starts_at=T - timedelta(days=30), ends_at=T + timedelta(days=300),
              issued_at=T - timedelta(days=30), grace_days=14)
UNTIL = LEASE.holds_until()


@pytest.mark.parametrize("now, lease_until, state, reason", [
    (UNTIL - timedelta(seconds=1), UNTIL, "none", None),
    (UNTIL, UNTIL, "active", "lease_expired"),
    (UNTIL + timedelta(days=14), UNTIL, "enforced", "lease_expired"),
    (UNTIL + timedelta(days=100), NO_LEASE, "none", None),  # no lease required: never lease grace
    (TERMS.ends_at + timedelta(days=1), UNTIL, "active", "expired"),  # expiry takes precedence
])
def test_lease_grace_runs_from_the_lease_end(now: datetime, lease_until: datetime, state: str,
                                             reason: str | None) -> None:
    rec, _ = evaluate(TERMS, 1, NO_GRACE, now, lease_until)
    assert (rec.state, rec.reason) == (state, reason)
    if reason == "lease_expired":
        assert rec.started_at == UNTIL and rec.ends_at == UNTIL + timedelta(days=14)


def test_read_paths_keep_a_recorded_lease_cause_and_a_renewal_ends_it() -> None:
    rec = GraceRecord("active", "lease_expired", UNTIL, UNTIL + timedelta(days=14))
    later = UNTIL + timedelta(days=15)
    assert effective(TERMS, rec, later).state == "enforced"  # lease unknown here: the recorded cause holds
    renewed, transitions = evaluate(TERMS, 1, rec, later, later + timedelta(days=7))
    assert renewed == NO_GRACE and [t.kind for t in transitions] == ["ended"]
    assert "renewed" in transitions[0].sentence


def test_renewal_is_due_at_half_life_and_backs_off_after_failures() -> None:
    row = SubscriptionLease(subscription_id="SUB-1", tenant="t", tenant_id=TID, lease=TEXT, issued_at=T,
                            expires_at=T + timedelta(days=7))
    assert not leases.renewal_due(row, T + timedelta(days=3, hours=11))
    assert leases.renewal_due(row, T + timedelta(days=3, hours=12))
    waits = []
    at = T + timedelta(days=4)
    for _ in range(9):
        leases.record_failure(row, at, "authority unreachable")
        assert not leases.renewal_due(row, at)
        waits.append(row.next_attempt_at - at)  # type: ignore[operator]
        at = row.next_attempt_at  # type: ignore[assignment]
        assert leases.renewal_due(row, at)
    assert [w.total_seconds() / 60 for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    leases.set_problem(row, at, "moved: …")
    assert not leases.renewal_due(row, at + timedelta(days=1))  # moved: nothing left to renew
