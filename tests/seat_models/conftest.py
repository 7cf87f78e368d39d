"""Helpers for the seat-model tests: subscriptions of each policy, directory users, enrollments, wiring."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from licsync.config import Settings
from licsync.db import session_scope
from licsync.db.models import AuditLog, DirectoryUser, Seat
from licsync.subscriptions import keys, registry
from licsync.subscriptions.terms import FrozenMap, Terms

TENANT = "contoso"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture(scope="session")
def vendor() -> tuple[bytes, str]:
    return keys.generate_keypair()


def make_settings(url: str = "sqlite://", **seats: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "tenant": [
                {"name": TENANT, "tenant_id": "t-guid", "client_id": "c-guid", "client_secret": "env:LICSYNC_X"}
            ],
            "seats": {"mass_free_fraction": 1.0, **seats},
            "roles": {
                "teacher": ["elearn"],
                "observer": ["weclimb"],
                "coach": ["elearn", "weclimb"],
                "leader": ["combined"],
                "auditor": ["audit"],
            },
        }
    )


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def activate(
    engine: Engine,
    vendor: tuple[bytes, str],
    *,
    policy: str,
    seats: int,
    overage: str = "grace",
    now: datetime = NOW,
    sub_id: str = "SUB-1",
    starts: datetime = YEAR_START,
    ends: datetime = YEAR_END,
    issued: datetime | None = None,
    **extras: Any,
) -> Terms:
    terms = Terms(
        id=sub_id,
        customer="Contoso",
        seats=seats,
        starts_at=starts,
        ends_at=ends,
        issued_at=issued or starts - timedelta(days=1),
        policy=policy,
        overage=overage,
        extras=FrozenMap(extras),
    )
    key = keys.issue(vendor[0], terms)
    with session_scope(engine) as s:
        registry.activate(s, TENANT, key, vendor[1], now)
    return terms


def add_users(engine: Engine, ids: Iterable[str], *, enabled: bool = True, **props: Any) -> None:
    rows = [{"tenant": TENANT, "id": i, "account_enabled": enabled, "deleted": "none", **props} for i in ids]
    with engine.begin() as conn:
        conn.execute(insert(DirectoryUser.__table__), rows)  # type: ignore[attr-defined]


def enrollment_row(
    user: str,
    course: str = "c1",
    *,
    catalog: str = "cat1",
    expires: str = "",
    enrolled: str = "2026-01-05T09:00:00Z",
    status: str = "published",
) -> list[str]:
    return [
        catalog,
        f"Catalog {catalog}",
        course,
        f"Course {course}",
        status,
        user,
        f"{user}@contoso.com",
        "learner",
        enrolled,
        expires,
    ]


def write_rows(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Path:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(header))
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def open_seats(engine: Engine) -> dict[str, str]:
    t = Seat.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        return dict(
            c.execute(
                select(t.c.holder, t.c.acquire_reason).where(t.c.tenant == TENANT, t.c.released_at.is_(None))
            ).all()
        )


def released(engine: Engine) -> dict[str, str]:
    t = Seat.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        return dict(
            c.execute(
                select(t.c.holder, t.c.release_reason).where(t.c.tenant == TENANT, t.c.released_at.is_not(None))
            ).all()
        )


def audit_actions(engine: Engine) -> list[str]:
    t = AuditLog.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        return [r[0] for r in c.execute(select(t.c.action).where(t.c.tenant == TENANT).order_by(t.c.seq))]


class Cli:
    """``licsync`` end to end: a config file pointing at the Graph emulator, a vendor key pair, a database."""

    def __init__(self, tmp_path: Path, graph_env: Any, capsys: pytest.CaptureFixture[str], **config: Any) -> None:
        from licsync.cli import main
        from tests.conftest import write_config

        self.main, self.capsys, self.tmp = main, capsys, tmp_path
        self.latest = "2026-03-02T12:00:00Z"
        self.graph = graph_env
        self.directory = graph_env.tenant.directory
        main(["subscription", "keygen", "--out", str(tmp_path / "vendor")])
        capsys.readouterr()
        public = (tmp_path / "vendor" / "vendor.pub").read_text().strip()
        self.config = write_config(
            tmp_path / "licsync.toml",
            {
                "database": {"url": f"sqlite:///{tmp_path}/e2e.db"},
                "vendor": {"public_key": public},
                "tenant": [graph_env.server.tenant_config(TENANT, tenant=graph_env.tenant, max_retries=2)],
                "seats": {"mass_free_fraction": 1.0},
                **config,
            },
        )
        self("db", "upgrade")

    def __call__(self, *args: str, now: str | None = None, code: int = 0) -> str:
        """Run licsync; without ``now``, at the latest instant used so far (a writing command refuses
        to go back in time), starting at 2026-03-02T12:00:00Z."""
        if now is None:
            now = self.latest
        elif code == 0:
            self.latest = max(self.latest, now)
        self.capsys.readouterr()
        try:
            self.main(["--config", str(self.config), "--now", now, *args])
            got = 0
        except SystemExit as exc:
            got = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        assert got == code, f"licsync {' '.join(args)} exited {got}: {err}"
        return out if code == 0 else err

    def json(self, *args: str, now: str | None = None) -> Any:
        import orjson

        return orjson.loads(self(*args, "--json", now=now))

    def activate(
        self, policy: str, seats: int, *extra: str, starts: str = "2026-01-01", ends: str = "2026-12-31",
        now: str | None = None,
    ) -> str:
        key = self(
            "subscription",
            "issue",
            "--private-key",
            str(self.tmp / "vendor" / "vendor.key"),
            "--id",
            f"SUB-{policy}",
            "--customer",
            "Contoso",
            "--seats",
            str(seats),
            "--starts",
            starts,
            "--ends",
            ends,
            "--policy",
            policy,
            *extra,
            now="2025-12-01T00:00:00Z",
        ).strip()
        return self("activate", "--tenant", TENANT, key, now=now)

    def file(self, name: str, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
        return str(write_rows(self.tmp / name, header, rows))


@pytest.fixture
def cli(tmp_path: Path, graph_env: Any, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(
        tmp_path, graph_env, capsys, roles={"teacher": ["elearn"], "observer": ["weclimb"], "leader": ["combined"]}
    )
