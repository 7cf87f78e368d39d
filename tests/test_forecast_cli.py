"""The forecast end to end: the daily ledger → `licsync forecast`, `status --json`, and the mail once per crossing."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from typing import Any

from sqlalchemy import create_engine, delete, insert, select

from licsync.db.models import LedgerSnapshot, OutboxMessage
from tests.conftest import write_config
from tests.test_cli_e2e import _issue, setup  # noqa: F401 - the shared end-to-end fixture

_L = LedgerSnapshot.__table__  # type: ignore[attr-defined]
_O = OutboxMessage.__table__  # type: ignore[attr-defined]
DAY0 = date(2026, 6, 1)


def _ledger(url: str, days: int, start: float, per_day: float) -> None:
    """Rewrite the tenant's daily ledger for the ``days`` before DAY0 (as many cycles would have)."""
    engine = create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(delete(_L).where(_L.c.tenant == "contoso", _L.c.day < DAY0.isoformat()))
            c.execute(insert(_L), [{"tenant": "contoso", "day": (DAY0 - timedelta(days=days - i)).isoformat(),
                                    "catalog_id": "", "purchased": 12, "consumed": round(start + per_day * i),
                                    "available": 0, "overage": 0} for i in range(days)])
    finally:
        engine.dispose()


def _mails(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [r[0] for r in c.execute(select(_O.c.subject).where(_O.c.event == "seats_forecast"))]
    finally:
        engine.dispose()


def test_forecast_command_status_and_one_mail_per_crossing(setup: dict[str, Any], db_url: str) -> None:  # noqa: F811
    cli = setup["cli"]
    data = tomllib.loads(cli.config.read_text(encoding="utf-8"))
    data["tenant"][0]["admins"] = ["it@contoso.example"]
    write_config(cli.config, data)
    cli("db", "upgrade")
    cli("import", "enrollments", "--tenant", "contoso", str(setup["csv"]), now="2026-06-01T08:00:00Z")
    cli("activate", "--tenant", "contoso", _issue(setup, 12, "2027-12-31", "2026-06-01T08:00:00Z"),
        now="2026-06-01T08:01:00Z")
    cli("sync", "--tenant", "contoso", now="2026-06-01T08:02:00Z")
    first = cli.json("forecast", "--tenant", "contoso", now="2026-06-01T09:00:00Z")
    assert (first["reason"], first["runs_out_on"], first["history_days"]) == ("not_enough_history", None, 1)
    assert "not enough history" in cli("forecast", "--tenant", "contoso", now="2026-06-01T09:00:00Z")

    _ledger(db_url, 60, 1, 0.15)  # 1 → 10 seats over 60 days; 10 of 12 in use today: ~2 weeks left
    f = cli.json("forecast", "--tenant", "contoso", now="2026-06-01T09:00:00Z")
    assert f["reason"] is None and f["method"] == "theil_sen_90d" and f["history_days"] == 61
    assert (f["seats"], f["consumed"]) == (12, 10)
    runs_out = date.fromisoformat(f["runs_out_on"])
    assert 7 <= (runs_out - DAY0).days <= 21
    lo, hi = (date.fromisoformat(d) for d in f["range"])
    assert lo <= runs_out <= hi
    assert cli.json("status", "--tenant", "contoso", now="2026-06-01T09:00:00Z")["forecast"] == f
    assert f"seats run out on {f['runs_out_on']}" in cli("forecast", "--tenant", "contoso", now="2026-06-01T09:00:00Z")
    cat = cli.json("forecast", "--tenant", "contoso", "--catalog", "cat-a", now="2026-06-01T09:00:00Z")
    assert cat["catalog"] == "cat-a" and cat["consumed"] == 5

    cli("sync", "--tenant", "contoso", now="2026-06-01T10:00:00Z")
    cli("sync", "--tenant", "contoso", now="2026-06-01T11:00:00Z")
    mails = _mails(db_url)
    assert mails == [f"[licsync] contoso: seats forecast to run out on {f['runs_out_on']}"]  # once, not per cycle
    _ledger(db_url, 60, 10, 0)  # flat: the forecast leaves the window, which re-arms the mail …
    cli("sync", "--tenant", "contoso", now="2026-06-01T12:00:00Z")
    assert cli.json("forecast", "--tenant", "contoso", now="2026-06-01T12:00:00Z")["reason"] == "not_growing"
    _ledger(db_url, 60, 1, 0.15)  # … and the next crossing is announced again
    cli("sync", "--tenant", "contoso", now="2026-06-01T13:00:00Z")
    assert len(_mails(db_url)) == 2
