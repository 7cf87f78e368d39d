"""Every event sends exactly the right messages to the right people, once, over a real SMTP server."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import db
from licsync.config import Settings
from licsync.db.models import Catalog
from licsync.notify import events
from licsync.notify.audience import CatalogFigure, Figures
from licsync.notify.outbox import drain
from licsync.notify.transports import SmtpTransport
from licsync.subscriptions import grace
from licsync.subscriptions.grace import NO_GRACE
from licsync.subscriptions.keys import Terms
from tests.notify.conftest import NOW, Received, SmtpServer, make_settings, make_tenant

FAR = NOW + timedelta(days=3650)
TENANT_ADMINS = {"it-admin@contoso.example", "second@contoso.example"}
CATALOG_ADMINS = {"sales-lead@contoso.example", "safety-lead@contoso.example", "academy@contoso.example",
                  "both@contoso.example"}
EVERYONE = TENANT_ADMINS | CATALOG_ADMINS


def figures(consumed: int = 85, **over: Any) -> Figures:
    base = Figures(tenant="contoso", purchased=100, consumed=consumed,
                   catalogs=(CatalogFigure("sales", "Sales Academy", 41),
                             CatalogFigure("safety", "Safety <Basics>", 63),
                             CatalogFigure("rnd", "R&D Secret Catalog", 7)),
                   subscription_id="SUB-1", customer="Contoso Ltd", seats=100,
                   starts_at=datetime(2026, 1, 1, tzinfo=NOW.tzinfo), ends_at=datetime(2027, 1, 1, tzinfo=NOW.tzinfo))
    return replace(base, **over)


class Harness:
    """Run event functions in one transaction each, then drain to the real SMTP server."""

    def __init__(self, engine: Engine, smtp: SmtpServer) -> None:
        self.engine, self.smtp = engine, smtp
        tenants = [make_tenant("contoso", catalog_admins={
            "sales": ["sales-lead@contoso.example", "both@contoso.example"],
            "safety": ["safety-lead@contoso.example", "Both@Contoso.example"]}), make_tenant("fabrikam")]
        self.settings: Settings = make_settings(smtp.port, tenants=tenants)
        with db.session_scope(engine) as s:
            # Catalog admins from the database too; second@ is also a tenant admin: tenant message only.
            s.add(Catalog(tenant="contoso", id="sales", name="Sales Academy",
                          admins=["SALES-LEAD@contoso.example", "academy@contoso.example"]))
            s.add(Catalog(tenant="contoso", id="safety", name="Safety <Basics>", admins=["second@contoso.example"]))
            s.add(Catalog(tenant="contoso", id="rnd", name="R&D Secret Catalog", admins=[]))

    def run(self, fn: Callable[[Session], object]) -> list[Received]:
        before = len(self.smtp.messages)
        with db.session_scope(self.engine) as s:
            fn(s)
        asyncio.run(drain(self.engine, self.settings, SmtpTransport("127.0.0.1", self.smtp.port), FAR, limit=1000))
        return self.smtp.messages[before:]


@pytest.fixture
def h(sqlite_engine: Engine, smtp: SmtpServer) -> Harness:
    return Harness(sqlite_engine, smtp)


def rcpts(msgs: list[Received]) -> set[str]:
    return {m.rcpt_tos[0].lower() for m in msgs}


def one_each(msgs: list[Received]) -> bool:
    return all(n == 1 for n in Counter(m.rcpt_tos[0].lower() for m in msgs).values())


def by(msgs: list[Received], address: str) -> Received:
    (m,) = [m for m in msgs if m.rcpt_tos[0].lower() == address]
    return m


# --------------------------------------------------------------------------- thresholds and catalog isolation


def test_threshold_crossings_upwards_once_each_and_rearmed_below(h: Harness) -> None:
    s = h.settings

    def at(consumed: int, now: datetime = NOW) -> list[Received]:
        return h.run(lambda ses: events.usage_thresholds(ses, s, "contoso", figures(consumed), now))

    assert at(70) == []
    crossed = at(85)
    assert rcpts(crossed) == EVERYONE and one_each(crossed)
    assert all("80 %" in m.message["Subject"] for m in crossed)
    assert at(86) == [] and at(85) == []  # still above 80: nothing new
    jump = at(100)  # 80 → 100 at once: one message, about the highest crossed
    assert rcpts(jump) == EVERYONE and all("100 %" in m.message["Subject"] for m in jump)
    assert at(92) == []  # falling re-arms 100, says nothing
    assert at(79) == []  # below 80: everything re-armed
    assert at(81) == []  # re-crossed the same day: hovering is announced at most once a day
    assert at(81, NOW + timedelta(days=1)) == []  # still above 80 the next day: nothing new
    assert at(75, NOW + timedelta(days=1)) == []
    again = at(81, NOW + timedelta(days=1))  # a new crossing on another day is announced
    assert rcpts(again) == EVERYONE and all("80 %" in m.message["Subject"] for m in again)
    assert h.run(lambda ses: events.usage_thresholds(ses, s, "contoso", figures(81, purchased=0), NOW)) == []


def test_catalog_admins_see_only_their_own_catalogs(h: Harness) -> None:
    msgs = h.run(lambda s: events.usage_thresholds(s, h.settings, "contoso", figures(85), NOW))
    tenant_admin = by(msgs, "it-admin@contoso.example")
    assert all(name in tenant_admin.text() for name in ("Sales Academy", "Safety <Basics>", "R&D Secret Catalog"))
    assert "R&amp;D Secret Catalog" in tenant_admin.html()
    assert "Safety &lt;Basics&gt;" in tenant_admin.html() and "<Basics>" not in tenant_admin.html()
    assert "licsync catalog remove-learner --tenant contoso" in tenant_admin.text()

    sales = by(msgs, "sales-lead@contoso.example")  # config + database (other case): one message
    both = by(msgs, "both@contoso.example")
    academy = by(msgs, "academy@contoso.example")
    safety = by(msgs, "safety-lead@contoso.example")
    for m, mine, others in ((sales, ["Sales Academy"], ["Safety", "R&D", "rnd", "safety", "63"]),
                            (academy, ["Sales Academy"], ["Safety", "R&D", "rnd", "63"]),
                            (safety, ["Safety"], ["Sales Academy", "R&D", "rnd", "41"]),
                            (both, ["Sales Academy", "Safety"], ["R&D", "rnd", "Secret"])):
        body = m.text() + m.html()
        for name in mine:
            assert name in body
        for name in others:
            assert name not in body, (m.rcpt_tos, name)
        assert "85 of 100 seats" in m.text()  # the shared pool is what the event is about
        assert "it-admin@contoso.example" in m.text()  # whom to contact
        assert "licsync activate" not in m.text()  # no commands for people who cannot run them
    assert "fabrikam" not in "".join(m.text() for m in msgs)


# --------------------------------------------------------------------------- grace


def terms(**over: Any) -> Terms:
    base: dict[str, Any] = {"id": "SUB-1", "customer": "Contoso Ltd", "seats": 100,
                            "starts_at": datetime(2026, 1, 1, tzinfo=NOW.tzinfo),
                            "ends_at": datetime(2027, 1, 1, tzinfo=NOW.tzinfo),
                            "issued_at": datetime(2025, 12, 1, tzinfo=NOW.tzinfo)}
    return Terms(**(base | over))


def simulate(h: Harness, t: Terms, consumed_at: Callable[[datetime], int], start: datetime, end: datetime,
             step: timedelta = timedelta(hours=6)) -> list[Received]:
    """Run the grace machine and the grace events every ``step``, like the sync cycle would."""
    record = NO_GRACE
    out: list[Received] = []
    now = start
    while now <= end:
        consumed = consumed_at(now)
        record, transitions = grace.evaluate(t, consumed, record, now)
        f = figures(consumed, ends_at=t.ends_at)
        rec, at = record, now

        def cycle(s: Session, f: Figures = f, tr: Any = transitions, rec: Any = rec, at: datetime = at) -> None:
            events.grace_transitions(s, h.settings, "contoso", f, tr, at)
            events.grace_reminders(s, h.settings, "contoso", f, rec, at)

        out += h.run(cycle)
        now += step
    return out


def test_seat_limit_grace_lifecycle_each_message_once(h: Harness) -> None:
    fixed = NOW + timedelta(days=15, hours=12)
    msgs = simulate(h, terms(), lambda now: 100 if now < NOW + timedelta(days=13) else
                    (104 if now < fixed else 90), NOW, NOW + timedelta(days=17))
    kinds = Counter((m.message["X-Licsync-Event"], m.rcpt_tos[0].lower()) for m in msgs)
    for event in ("grace_started", "grace_reminder", "grace_ends_tomorrow", "grace_enforced", "grace_ended"):
        assert {r for (e, r) in kinds if e == event} == EVERYONE, event
        assert all(n == 1 for (e, _r), n in kinds.items() if e == event), event
    order = [m.message["X-Licsync-Event"] for m in msgs if m.rcpt_tos[0] == "it-admin@contoso.example"]
    assert order == ["grace_started", "grace_reminder", "grace_ends_tomorrow", "grace_enforced", "grace_ended"]
    started = by([m for m in msgs if m.message["X-Licsync-Event"] == "grace_started"], "it-admin@contoso.example")
    assert "2026-12-06 10:00 UTC" in started.text() and "14 days left" in started.text()
    assert "100 of 100 seats" in started.text()
    enforced = by([m for m in msgs if m.message["X-Licsync-Event"] == "grace_enforced"], "it-admin@contoso.example")
    assert "the 4 seats acquired last beyond the maximum are not licensed" in enforced.text()


def test_expiry_grace_first_seen_late_skips_reminders_already_past(h: Harness) -> None:
    t = terms(ends_at=NOW)  # expired at NOW; the first cycle to see it runs 10 days later
    msgs = simulate(h, t, lambda now: 50, NOW + timedelta(days=10), NOW + timedelta(days=15))
    order = [m.message["X-Licsync-Event"] for m in msgs if m.rcpt_tos[0] == "it-admin@contoso.example"]
    assert order == ["grace_started", "grace_ends_tomorrow", "grace_enforced"]
    started = by([m for m in msgs if m.message["X-Licsync-Event"] == "grace_started"], "it-admin@contoso.example")
    assert "expired at 2026-11-22 10:00 UTC" in started.text() and "4 days left" in started.text()
    assert "licsync activate --tenant contoso KEY" in started.text()
    enforced = [m for m in msgs if m.message["X-Licsync-Event"] == "grace_enforced"]
    assert "no learner is licensed" in enforced[0].text()


def test_expiry_warnings_30_7_1_once_each_and_rearmed_by_renewal(h: Harness) -> None:
    ends = NOW + timedelta(days=40)

    def daily(f: Figures, start: datetime, days: int) -> list[Received]:
        out: list[Received] = []
        for d in range(days):
            at = start + timedelta(days=d)
            out += h.run(lambda s, at=at: events.expiry_warnings(s, h.settings, "contoso", f, at))
        return out

    msgs = daily(figures(ends_at=ends), NOW, 45)
    mine = [m for m in msgs if m.rcpt_tos[0] == "it-admin@contoso.example"]
    assert [m.message["Subject"].split(" expires ")[1].split(" (")[0] for m in mine] == [
        "in 30 days", "in 7 days", "within a day"]
    assert rcpts(msgs) == EVERYONE and len(msgs) == 3 * len(EVERYONE)
    # A renewal moves the expiry instant: the warnings apply again to the new one (first seen at 5 days).
    renewed = NOW + timedelta(days=365)
    again = daily(figures(ends_at=renewed), renewed - timedelta(days=5), 6)
    subjects = [m.message["Subject"] for m in again if m.rcpt_tos[0] == "it-admin@contoso.example"]
    assert len(subjects) == 2 and "in 5 days" in subjects[0] and "within a day" in subjects[1]


# --------------------------------------------------------------------------- tenant-admin-only events


def test_subscription_moved_tells_only_the_first_tenants_admins(h: Harness) -> None:
    def move(s: Session) -> None:
        events.subscription_moved(s, h.settings, from_tenant="contoso", subscription_id="SUB-1",
                                  customer="Contoso Ltd", seats=100, now=NOW)

    msgs = h.run(move)
    assert rcpts(msgs) == TENANT_ADMINS and one_each(msgs)
    assert "no longer active on contoso" in msgs[0].text() and "fabrikam" not in msgs[0].text()
    assert h.run(move) == []


def test_mass_free_held_names_the_hold_and_the_command(h: Harness) -> None:
    def hold(s: Session) -> None:
        events.mass_free_held(s, h.settings, "contoso", hold_id="hold-1a2b3c4d", frees=612,
                              reason="612 seats would be freed, more than mass_free_threshold (500)", now=NOW)

    msgs = h.run(hold)
    assert rcpts(msgs) == TENANT_ADMINS
    assert "licsync approve hold-1a2b3c4d" in msgs[0].text() and "612 seats" in msgs[0].text()
    assert h.run(hold) == []


def test_sync_failing_once_per_streak_then_recovered(h: Harness) -> None:
    s = h.settings

    def failed(n: int, at: datetime = NOW) -> list[Received]:
        return h.run(lambda ses: events.sync_failed(ses, s, "contoso", failures=n, error="Graph users/delta: "
                                                    "HTTP 503 <unavailable>", now=at))

    def ok(at: datetime) -> list[Received]:
        return h.run(lambda ses: events.sync_succeeded(ses, s, "contoso", at))

    assert failed(1) == [] and failed(2) == [] and ok(NOW) == []
    assert failed(1) == [] and failed(2) == []
    streak = failed(3)
    assert rcpts(streak) == TENANT_ADMINS and "3 cycles in a row" in streak[0].message["Subject"]
    assert "HTTP 503 &lt;unavailable&gt;" in streak[0].html()
    assert failed(4) == [] and failed(5) == []
    back = ok(NOW + timedelta(hours=1))
    assert rcpts(back) == TENANT_ADMINS and "works again" in back[0].message["Subject"]
    assert ok(NOW + timedelta(hours=2)) == []
    assert len(failed(3, NOW + timedelta(days=1))) == 2  # a new streak is announced again


def test_overage_hook_minor_and_major_once_per_episode(h: Harness) -> None:
    since = NOW - timedelta(days=2)

    def tier(name: Any, consumed: int) -> list[Received]:
        return h.run(lambda s: events.overage(s, h.settings, "contoso", figures(consumed), tier=name, since=since,
                                              now=NOW, upgrade_at=NOW + timedelta(hours=24)))

    minor = tier("minor", 103)
    assert rcpts(minor) == TENANT_ADMINS and "minor" in minor[0].message["Subject"]
    assert tier("minor", 104) == []
    major = tier("major", 108)
    assert "upgraded automatically" in major[0].text() and "2026-11-23 10:00 UTC" in major[0].text()


def test_unknown_tenant_and_tenant_without_admins_send_nothing(h: Harness) -> None:
    assert h.run(lambda s: events.mass_free_held(s, h.settings, "gone", hold_id="h", frees=1, reason="r",
                                                 now=NOW)) == []
    quiet = make_settings(h.smtp.port, tenants=[make_tenant("contoso", admins=[], catalog_admins={})])
    with db.session_scope(h.engine) as s:
        assert events.sync_failed(s, quiet, "contoso", failures=3, error="x", now=NOW) == 0
