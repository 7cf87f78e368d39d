"""The subscription registry against real databases: activation, moves, renewal, grace.

``engine`` comes from tests/conftest.py: SQLite always, PostgreSQL when LICSYNC_TEST_PG_URL is set.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from licsync.db import session_scope
from licsync.db.models import AuditLog, GraceState, Seat, Subscription
from licsync.errors import ConfigError, InputError
from licsync.subscriptions import keys, registry
from licsync.subscriptions.grace import NO_GRACE, GraceRecord

DAY = timedelta(days=1)
NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def issue(vendor, make_terms):
    def make(**over) -> str:
        return keys.issue(vendor[0], make_terms(**over))

    return make


def audit(session: Session, tenant: str | None = None) -> list[tuple[str | None, str, str | None]]:
    rows = session.exec(select(AuditLog).order_by(AuditLog.seq)).all()
    return [(r.tenant, r.action, r.subject) for r in rows if tenant is None or r.tenant == tenant]


def snapshot(engine: Engine) -> tuple[list, list, list]:
    with Session(engine) as s:
        subs = [r.model_dump() for r in s.exec(select(Subscription).order_by(Subscription.id)).all()]
        grace = [r.model_dump() for r in s.exec(select(GraceState)).all()]
        return subs, grace, audit(s)


def test_first_activation(engine, vendor, issue) -> None:
    with session_scope(engine) as s:
        result = registry.activate(s, "contoso", issue(), vendor[1], NOW, actor="alice@contoso.com")
    assert (result.outcome, result.previous_tenant, result.expired, result.not_started) == (
        "activated", None, False, False)
    assert "SUB-001" in result.sentence and "100 seats" in result.sentence
    with Session(engine) as s:
        row, terms = registry.active_subscription(s, "contoso", public_key_b64=vendor[1])
        assert (row.tenant, row.state, row.activated_at, terms.seats) == ("contoso", "active", NOW, 100)
        entry = s.exec(select(AuditLog)).one()
        assert (entry.action, entry.actor, entry.tenant, entry.at) == (
            "subscription_activated", "alice@contoso.com", "contoso", NOW)
        assert registry.subscription_summary(s, "contoso", NOW) == {
            "id": "SUB-001", "seats": 100, "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2027-01-01T00:00:00Z",
            "state": "active"}


def test_moving_a_subscription_deactivates_it_on_the_first_tenant(engine, vendor, issue) -> None:
    key = issue()
    with session_scope(engine) as s:
        registry.activate(s, "contoso", key, vendor[1], NOW)
    later = NOW + 5 * DAY
    with session_scope(engine) as s:
        result = registry.activate(s, "fabrikam", key, vendor[1], later, actor="bob@fabrikam.com")
    assert (result.outcome, result.previous_tenant) == ("moved", "contoso")
    assert "deactivated on contoso" in result.sentence
    with Session(engine) as s:
        assert registry.active_subscription(s, "contoso") is None
        assert registry.active_subscription(s, "fabrikam")[0].activated_at == later
        moved = s.exec(select(AuditLog).where(AuditLog.action == "subscription_moved")).all()
        assert sorted(m.tenant for m in moved) == ["contoso", "fabrikam"]
        for m in moved:
            assert (m.actor, m.at, m.subject) == ("bob@fabrikam.com", later, "SUB-001")
            assert (m.detail["from_tenant"], m.detail["to_tenant"]) == ("contoso", "fabrikam")
            assert m.detail["actor"] == "bob@fabrikam.com" and m.detail["at"] == "2026-03-06T09:00:00Z"
        assert registry.subscription_summary(s, "contoso", later)["state"] == "deactivated"
        assert registry.subscription_summary(s, "contoso", later)["id"] == "SUB-001"
        assert registry.subscription_summary(s, "fabrikam", later)["state"] == "active"
        assert registry.subscription_summary(s, "northwind", later) == {
            "id": None, "seats": 0, "starts_at": None, "ends_at": None, "state": "none"}
    # and back again: the move works both ways
    with session_scope(engine) as s:
        assert registry.activate(s, "contoso", key, vendor[1], later + DAY).previous_tenant == "fabrikam"


def test_newer_key_renews_in_place(engine, vendor, issue) -> None:
    with session_scope(engine) as s:
        registry.activate(s, "contoso", issue(), vendor[1], NOW)
    newer = issue(seats=250, ends_at=EXPIRY + 365 * DAY, issued_at=NOW + DAY)
    with session_scope(engine) as s:
        result = registry.activate(s, "contoso", newer, vendor[1], NOW + 2 * DAY)
    assert result.outcome == "renewed"
    with Session(engine) as s:
        row, terms = registry.active_subscription(s, "contoso")
        assert (terms.seats, terms.ends_at, row.seats, row.key) == (250, EXPIRY + 365 * DAY, 250, newer)
        assert row.activated_at == NOW  # renewal keeps the activation date
        renewed = s.exec(select(AuditLog).where(AuditLog.action == "subscription_renewed")).one()
        assert (renewed.detail["seats"], renewed.detail["previous_terms"]["seats"]) == (250, 100)


@pytest.mark.parametrize("tenant", ["contoso", "fabrikam"])
def test_older_key_is_refused_and_changes_nothing(engine, vendor, issue, tenant) -> None:
    older = issue()
    with session_scope(engine) as s:
        registry.activate(s, "contoso", issue(seats=250, issued_at=NOW), vendor[1], NOW)
    before = snapshot(engine)
    with pytest.raises(InputError, match="an older key never replaces a newer one"), session_scope(engine) as s:
        registry.activate(s, tenant, older, vendor[1], NOW + DAY)
    assert snapshot(engine) == before


def test_identical_key_on_the_same_tenant_is_a_no_op(engine, vendor, issue) -> None:
    key = issue()
    with session_scope(engine) as s:
        registry.activate(s, "contoso", key, vendor[1], NOW)
    before = snapshot(engine)
    with session_scope(engine) as s:
        again = registry.activate(s, "contoso", "\n".join([key[:50], key[50:]]), vendor[1], NOW + DAY)
    assert again.outcome == "already_active" and again.since == NOW
    assert again.sentence.endswith(f"is already active on contoso since {NOW:%Y-%m-%d %H:%M} UTC; nothing changed.")
    assert snapshot(engine) == before


def test_a_move_reads_has_moved_to(engine, vendor, issue) -> None:
    key = issue()
    with session_scope(engine) as s:
        registry.activate(s, "contoso", key, vendor[1], NOW)
    with session_scope(engine) as s:
        moved = registry.activate(s, "fabrikam", key, vendor[1], NOW + DAY)
    assert ") has moved to fabrikam. It was deactivated on contoso" in moved.sentence


def test_same_issue_time_with_other_terms_is_refused(engine, vendor, issue) -> None:
    with session_scope(engine) as s:
        registry.activate(s, "contoso", issue(), vendor[1], NOW)
    with pytest.raises(InputError, match="same issue time"), session_scope(engine) as s:
        registry.activate(s, "fabrikam", issue(seats=5000), vendor[1], NOW)


@pytest.mark.parametrize(("public", "error", "match"), [
    (None, ConfigError, "vendor.public_key"),
    ("AAAA", ConfigError, "vendor.public_key"),
])
def test_bad_public_key_changes_nothing(engine, issue, public, error, match) -> None:
    with pytest.raises(error, match=match), session_scope(engine) as s:
        registry.activate(s, "contoso", issue(), public, NOW)
    assert snapshot(engine) == ([], [], [])


def test_bad_or_foreign_key_changes_nothing(engine, vendor, other_vendor, make_terms, issue) -> None:
    foreign = keys.issue(other_vendor[0], make_terms())
    for bad in (foreign, issue()[:-3] + "AAA", "LSK1.garbage", ""):
        with pytest.raises(InputError, match="subscription key refused"), session_scope(engine) as s:
            registry.activate(s, "contoso", bad, vendor[1], NOW)
    assert snapshot(engine) == ([], [], [])


def test_another_subscription_replaces_the_active_one(engine, vendor, issue) -> None:
    first = issue()
    with session_scope(engine) as s:
        registry.activate(s, "contoso", first, vendor[1], NOW)
    with session_scope(engine) as s:
        result = registry.activate(s, "contoso", issue(id="SUB-002", seats=10), vendor[1], NOW + DAY)
    assert result.replaced_subscription_id == "SUB-001"
    with Session(engine) as s:
        assert registry.active_subscription(s, "contoso")[1].id == "SUB-002"
        old = s.get(Subscription, "SUB-001")
        assert (old.state, old.deactivated_at, old.tenant) == ("deactivated", NOW + DAY, "contoso")
        assert audit(s)[-2:] == [("contoso", "subscription_replaced", "SUB-001"),
                                 ("contoso", "subscription_activated", "SUB-002")]
    with session_scope(engine) as s:  # the first one can come back with the same key
        result = registry.activate(s, "contoso", first, vendor[1], NOW + 2 * DAY)
    assert (result.outcome, result.replaced_subscription_id) == ("reactivated", "SUB-002")


def test_caller_owns_the_transaction(engine, vendor, issue) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        registry.activate(s, "contoso", issue(), vendor[1], NOW)
        raise RuntimeError("notification enqueue failed")
    assert snapshot(engine) == ([], [], [])


def test_stored_terms_come_from_the_signed_key(engine, vendor, issue) -> None:
    with session_scope(engine) as s:
        registry.activate(s, "contoso", issue(), vendor[1], NOW)
    with session_scope(engine) as s:
        s.get(Subscription, "SUB-001").seats = 100_000  # an edited column grants nothing
    with Session(engine) as s:
        assert registry.active_subscription(s, "contoso")[1].seats == 100
    with session_scope(engine) as s:
        row = s.get(Subscription, "SUB-001")
        row.key = keys.issue(keys.generate_keypair()[0], registry.active_subscription(s, "contoso")[1])
    with Session(engine) as s, pytest.raises(InputError, match="altered"):
        registry.active_subscription(s, "contoso", public_key_b64=vendor[1])


def test_subscription_state(make_terms) -> None:
    terms, row = make_terms(), Subscription(id="x", key="")
    assert registry.subscription_state(None, None, NOW) == "none"
    assert registry.subscription_state(terms, Subscription(id="x", key="", state="deactivated"), NOW) == "deactivated"
    assert registry.subscription_state(terms, row, NOW) == "active"
    assert registry.subscription_state(terms, row, EXPIRY - timedelta(microseconds=1)) == "active"
    assert registry.subscription_state(terms, row, EXPIRY) == "expired"


# --------------------------------------------------------------------------- grace


def test_grace_is_evaluated_persisted_and_audited(engine, vendor, issue) -> None:
    with session_scope(engine) as s:
        registry.activate(s, "contoso", issue(seats=3), vendor[1], NOW)
    with session_scope(engine) as s:
        assert registry.evaluate_grace(s, "contoso", 2, NOW) == []
    with session_scope(engine) as s:
        out = registry.evaluate_grace(s, "contoso", 3, NOW + DAY, cycle_id=7)
    assert [t.action for t in out] == ["grace_started"]
    started = GraceRecord("active", "seat_limit", NOW + DAY, NOW + 15 * DAY)
    with Session(engine) as s:
        assert registry.grace_record(s, "contoso", "SUB-001") == started
        row = s.get(GraceState, ("contoso", "SUB-001"))
        assert row.updated_at == NOW + DAY
        entry = s.exec(select(AuditLog).where(AuditLog.action == "grace_started")).one()
        assert (entry.cycle_id, entry.subject, entry.detail["reason"], entry.detail["ends_at"]) == (
            7, "SUB-001", "seat_limit", "2026-03-16T09:00:00Z")
        assert entry.detail["started_at"] == "2026-03-02T09:00:00Z"
    with session_scope(engine) as s:  # the same inputs again: nothing new
        assert registry.evaluate_grace(s, "contoso", 3, NOW + 2 * DAY) == []
    with session_scope(engine) as s:
        assert [t.action for t in registry.evaluate_grace(s, "contoso", 4, NOW + 15 * DAY)] == ["grace_enforced"]
    with session_scope(engine) as s:
        assert [t.action for t in registry.evaluate_grace(s, "contoso", 2, NOW + 16 * DAY)] == ["grace_ended"]
    with Session(engine) as s:
        assert registry.grace_record(s, "contoso", "SUB-001") == NO_GRACE
        assert [a for _t, a, _s in audit(s) if a.startswith("grace")] == [
            "grace_started", "grace_enforced", "grace_ended"]


def test_expired_key_goes_straight_into_expiry_grace(engine, vendor, issue) -> None:
    now = EXPIRY + 20 * DAY
    with session_scope(engine) as s:
        result = registry.activate(s, "contoso", issue(), vendor[1], now)
    assert result.expired and "expired at 2027-01-01 00:00 UTC" in result.sentence
    with Session(engine) as s:
        expected = GraceRecord("enforced", "expired", EXPIRY, EXPIRY + 14 * DAY)
        assert registry.current_grace(s, "contoso", now) == expected
        assert registry.subscription_summary(s, "contoso", now)["state"] == "expired"
    with session_scope(engine) as s:
        out = registry.evaluate_grace(s, "contoso", 0, now)
    assert [(t.action, t.at) for t in out] == [("grace_started", EXPIRY), ("grace_enforced", EXPIRY + 14 * DAY)]


def test_no_grace_without_an_active_subscription(engine) -> None:
    with session_scope(engine) as s:
        assert registry.evaluate_grace(s, "contoso", 500, NOW) == []
        assert registry.current_grace(s, "contoso", NOW) == NO_GRACE


def test_seat_rank_is_stable(engine) -> None:
    t0 = NOW - 30 * DAY
    with session_scope(engine) as s:
        for holder, acquired, released in [("ann", t0 + DAY, None), ("bob", t0, None), ("cem", t0 + DAY, None),
                                           ("old", t0 - DAY, t0), ("dee", t0 + 2 * DAY, None)]:
            s.add(Seat(tenant="contoso", holder=holder, acquired_at=acquired, released_at=released,
                       acquire_reason="enrolled"))
        s.add(Seat(tenant="fabrikam", holder="zed", acquired_at=t0 - 9 * DAY, acquire_reason="enrolled"))
    with Session(engine) as s:
        ranks = {h: registry.seat_rank(s, "contoso", h) for h in ("ann", "bob", "cem", "dee", "old", "nobody")}
    assert ranks == {"ann": 2, "bob": 1, "cem": 3, "dee": 4, "old": None, "nobody": None}
