"""Render one example of every notification into a directory: ``python -m licsync.notify.render_examples DIR``.

The examples are produced by the real event functions against a throw-away SQLite database with
sample figures, so what is committed under docs/notifications/examples is exactly what an admin
(or a catalog admin: ``*.catalog.*``) receives.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session, select

from licsync import db
from licsync.config import NotificationsConfig, Settings, TenantConfig
from licsync.db.models import OutboxMessage
from licsync.notify import events
from licsync.notify.audience import CatalogFigure, Figures
from licsync.subscriptions.grace import GraceRecord, Transition

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def sample_settings() -> Settings:
    tenant = TenantConfig(name="contoso", tenant_id="00000000-0000-0000-0000-000000000001", client_id="app",
                          client_secret="env:CONTOSO_SECRET",  # noqa: S106 - a reference, not a secret
                          admins=["it-admin@contoso.example"],
                          catalog_admins={"sales": ["sales-lead@contoso.example"]})
    return Settings(tenant=[tenant], notifications=NotificationsConfig(transport="smtp",
                                                                       sender="licsync@contoso.example"))


def sample_figures(consumed: int = 92) -> Figures:
    return Figures(tenant="contoso", purchased=100, consumed=consumed,
                   catalogs=(CatalogFigure("sales", "Sales Academy", 41),
                             CatalogFigure("safety", "Safety <Basics>", 63)),
                   subscription_id="SUB-2026-0042", customer="Contoso Ltd", seats=100,
                   starts_at=datetime(2026, 1, 1, tzinfo=UTC), ends_at=datetime(2027, 1, 1, tzinfo=UTC))


def _generate(session: Session, settings: Settings) -> None:
    f = sample_figures()
    start, end = NOW - timedelta(days=2), NOW + timedelta(days=12)
    started = Transition("none", "active", "seat_limit", start, "", start, end)
    events.usage_thresholds(session, settings, "contoso", f, NOW)
    f = sample_figures(100)
    events.grace_transitions(session, settings, "contoso", f, [started], NOW)
    rec = GraceRecord("active", "seat_limit", start, end)
    events.grace_reminders(session, settings, "contoso", f, rec, start + timedelta(days=7, hours=1))
    events.grace_reminders(session, settings, "contoso", f, rec, end - timedelta(hours=20))
    over = replace(f, consumed=104)
    events.grace_transitions(session, settings, "contoso", over, [
        Transition("active", "enforced", "seat_limit", end, "", start, end)], end)
    events.grace_transitions(session, settings, "contoso", sample_figures(97), [
        Transition("enforced", "none", "seat_limit", end + timedelta(days=1), "", start, end)],
        end + timedelta(days=1))
    f = sample_figures()
    events.expiry_warnings(session, settings, "contoso", f, datetime(2026, 12, 25, 9, 0, tzinfo=UTC))
    events.subscription_moved(session, settings, from_tenant="contoso", subscription_id="SUB-2026-0042",
                              customer="Contoso Ltd", seats=100, now=NOW)
    events.mass_free_held(session, settings, "contoso", hold_id="hold-1a2b3c4d", frees=612,
                          reason="612 seats would be freed, more than mass_free_threshold (500)", now=NOW, figures=f)
    events.sync_failed(session, settings, "contoso", failures=3, now=NOW,
                       error="Graph users/delta: HTTP 403, access denied; grant the application permission "
                             "User.Read.All with admin consent")
    events.sync_succeeded(session, settings, "contoso", NOW + timedelta(hours=2))
    events.overage(session, settings, "contoso", sample_figures(108), tier="major",
                   since=NOW - timedelta(days=3), now=NOW, upgrade_at=NOW + timedelta(hours=24))
    events.seats_forecast(session, settings, "contoso", within=True, now=NOW, forecast={
        "tenant": "contoso", "seats": 100, "consumed": 92, "runs_out_on": "2026-12-14",
        "range": ["2026-12-08", "2026-12-23"], "method": "theil_sen_90d", "history_days": 90, "reason": None,
        "slope_per_day": 0.41}, figures=sample_figures())
    events.send_test(session, settings, "contoso", NOW)


def render_examples(out_dir: Path) -> list[Path]:
    """Write ``{event}.txt``/``.html`` (and ``{event}.catalog.*`` for catalog admins) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = sample_settings()
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.get_engine(f"sqlite:///{tmp}/examples.db")
        try:
            db.upgrade(engine)
            with Session(engine) as session:
                _generate(session, settings)
                session.flush()
                rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
                for m in rows:
                    suffix = ".catalog" if m.recipient.startswith("sales-lead") else ""
                    text = f"From: {settings.notifications.sender}\nTo: {m.recipient}\nSubject: {m.subject}\n\n"
                    for name, body in ((f"{m.event}{suffix}.txt", text + m.body_text),
                                       (f"{m.event}{suffix}.html", m.body_html or "")):
                        path = out_dir / name
                        path.write_text(body, encoding="utf-8")
                        written.append(path)
                session.rollback()
        finally:
            engine.dispose()
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/notifications") / "examples"
    for p in render_examples(out):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
