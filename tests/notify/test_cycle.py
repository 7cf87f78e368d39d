"""The wiring the sync cycle and activation use, against real rows: seats, catalogs, a signed subscription."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import db, ledger, reseat
from licsync.db.models import Catalog, Course, Enrollment, LearnerListEntry, MassFreeHold, Seat
from licsync.notify import events
from licsync.notify.outbox import drain
from licsync.notify.transports import SmtpTransport
from licsync.subscriptions import keys, registry
from tests.notify.conftest import Received, SmtpServer, make_settings, make_tenant

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


def seed(s: Session, users: range) -> None:
    """Seat holders u0… ; u0-u4 learn in 'sales', u3-u8 in 'safety' (u3, u4 count in both)."""
    for cid, name, course in (("sales", "Sales Academy", "c-sales"), ("safety", "Safety Basics", "c-safety")):
        if s.get(Catalog, ("contoso", cid)) is None:
            s.add(Catalog(tenant="contoso", id=cid, name=name))
            s.add(Course(tenant="contoso", id=course, catalog_id=cid, title=name))
    for i in users:
        uid = f"u{i}"
        s.add(Seat(tenant="contoso", holder=uid, acquired_at=NOW, acquire_reason="enrolled"))
        for cid, course, members in (("sales", "c-sales", range(0, 5)), ("safety", "c-safety", range(3, 9))):
            if i in members:
                s.add(Enrollment(tenant="contoso", course_id=course, user_id=uid, role="learner", enrolled_at=NOW))
                s.add(LearnerListEntry(tenant="contoso", catalog_id=cid, user_id=uid, added_at=NOW))
    s.flush()
    ledger.refresh_catalogs(s, "contoso", None)  # seats written directly: bring per-catalog counts in step


def test_cycle_and_activation_wiring(sqlite_engine: Engine, smtp: SmtpServer) -> None:
    private, public = keys.generate_keypair()
    key = keys.issue(private, keys.Terms(id="SUB-9", customer="Contoso Ltd", seats=10,
                                         starts_at=datetime(2026, 1, 1, tzinfo=UTC),
                                         ends_at=datetime(2027, 1, 1, tzinfo=UTC),
                                         issued_at=datetime(2025, 12, 1, tzinfo=UTC)))
    settings = make_settings(smtp.port, tenants=[make_tenant("contoso"), make_tenant("fabrikam")])

    def cycle(now: datetime, *, ok: bool = True, hold_id: str | None = None) -> list[Received]:
        """What a successful sync cycle (or, ``ok=False``, the between-cycles grace job) does."""
        before = len(smtp.messages)
        with db.session_scope(sqlite_engine) as s:
            figures = reseat.mail_figures(s, "contoso", now)
            transitions = registry.evaluate_grace(s, "contoso", figures.consumed, now)
            if ok:
                events.on_cycle(s, settings, "contoso", transitions=transitions, now=now, hold_id=hold_id,
                                figures=figures)
            else:
                events.on_change(s, settings, "contoso", transitions=transitions, now=now, figures=figures)
        asyncio.run(drain(sqlite_engine, settings, SmtpTransport("127.0.0.1", smtp.port), now))
        return smtp.messages[before:]

    with db.session_scope(sqlite_engine) as s:
        registry.activate(s, "contoso", key, public, NOW)
        seed(s, range(0, 9))
    with Session(sqlite_engine) as s:
        f = reseat.mail_figures(s, "contoso", NOW)
    assert (f.purchased, f.consumed, f.subscription_id) == (10, 9, "SUB-9")
    assert {c.id: c.consumed for c in f.catalogs} == {"sales": 5, "safety": 6}

    first = cycle(NOW)
    assert {m.message["X-Licsync-Event"] for m in first} == {"usage_threshold"}
    assert {m.rcpt_tos[0] for m in first} == {"it-admin@contoso.example", "second@contoso.example",
                                              "sales-lead@contoso.example", "safety-lead@contoso.example"}
    sales = next(m for m in first if m.rcpt_tos[0] == "sales-lead@contoso.example").text()
    assert "Sales Academy [sales]: 5" in sales and "Safety" not in sales
    assert cycle(NOW + timedelta(minutes=15)) == []

    with db.session_scope(sqlite_engine) as s:
        seed(s, range(9, 10))  # the tenth seat: the maximum is reached
    second = cycle(NOW + timedelta(minutes=30))
    assert sorted({m.message["X-Licsync-Event"] for m in second}) == ["grace_started", "usage_threshold"]
    started = next(m for m in second if m.message["X-Licsync-Event"] == "grace_started"
                   and m.rcpt_tos[0] == "it-admin@contoso.example")
    assert "10 of 10 seats" in started.text() and "2026-03-15 09:30 UTC" in started.text()
    assert cycle(NOW + timedelta(minutes=45)) == []

    # A failure streak: the grace job between cycles must not announce a recovery; the next good cycle does.
    t = NOW + timedelta(hours=1)
    with db.session_scope(sqlite_engine) as s:
        for n in (1, 2, 3):
            events.sync_failed(s, settings, "contoso", failures=n, error="Graph users/delta: HTTP 503", now=t)
    failing = cycle(t, ok=False)
    assert {m.message["X-Licsync-Event"] for m in failing} == {"sync_failing"}
    assert cycle(t + timedelta(minutes=1), ok=False) == []
    with db.session_scope(sqlite_engine) as s:
        s.add(MassFreeHold(id="hold-42", tenant="contoso", created_at=t, reason="7 of 10 seats would be freed",
                           frees=7))
    recovered = cycle(t + timedelta(minutes=15), hold_id="hold-42")
    assert sorted({m.message["X-Licsync-Event"] for m in recovered}) == ["mass_free_held", "sync_recovered"]
    held = next(m for m in recovered if m.message["X-Licsync-Event"] == "mass_free_held")
    assert "7 of 10 seats would be freed" in held.text() and "licsync approve hold-42" in held.text()
    assert {m.rcpt_tos[0] for m in recovered} == {"it-admin@contoso.example", "second@contoso.example"}

    # Activation elsewhere: the first tenant's admins hear of it, in activation's transaction.
    before = len(smtp.messages)
    later = NOW + timedelta(days=1)
    with db.session_scope(sqlite_engine) as s:
        result = registry.activate(s, "fabrikam", key, public, later)
        assert result.previous_tenant == "contoso"
        events.subscription_moved(s, settings, from_tenant=result.previous_tenant, subscription_id=result.terms.id,
                                  customer=result.terms.customer, seats=result.terms.seats, now=later)
    asyncio.run(drain(sqlite_engine, settings, SmtpTransport("127.0.0.1", smtp.port), later))
    moved = smtp.messages[before:]
    assert {m.rcpt_tos[0] for m in moved} == {"it-admin@contoso.example", "second@contoso.example"}
    assert all("fabrikam" not in m.text() for m in moved)
