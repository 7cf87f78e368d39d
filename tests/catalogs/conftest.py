"""Helpers for the catalog tests: a tenant, its directory users, CSV files, and table read-outs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from licsync.catalogs.csv_import import HEADER, ImportResult
from licsync.config import Settings
from licsync.db import session_scope
from licsync.db.models import (
    Activation,
    AuditLog,
    Catalog,
    Course,
    DirectoryUser,
    Enrollment,
    LearnerListEntry,
    Seat,
)
from licsync.service import import_enrollments

TENANT = "contoso"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLES = (Catalog, Course, Enrollment, LearnerListEntry, Activation, Seat, AuditLog)


def make_settings(**seats: Any) -> Settings:
    return Settings.model_validate(
        {
            "tenant": [
                {"name": TENANT, "tenant_id": "t-guid", "client_id": "c-guid", "client_secret": "env:LICSYNC_X"}
            ],
            "seats": seats,
        }
    )


@pytest.fixture
def settings() -> Settings:
    """Small test tenants free a large fraction at once: only the absolute mass-free threshold applies."""
    return make_settings(mass_free_fraction=1.0)


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """A migrated database with directory users u1…u9: SQLite, and PostgreSQL when one is configured."""
    add_users(engine, [f"u{i}" for i in range(1, 10)])
    yield engine


def add_users(engine: Engine, ids: Iterable[str], *, enabled: bool = True) -> None:
    rows = [{"tenant": TENANT, "id": i, "account_enabled": enabled, "deleted": "none"} for i in ids]
    with engine.begin() as conn:
        conn.execute(insert(DirectoryUser.__table__), rows)  # type: ignore[attr-defined]


def row(
    user: str,
    course: str = "c1",
    *,
    catalog: str = "cat1",
    catalog_name: str = "Sales",
    title: str | None = None,
    status: str = "published",
    role: str = "learner",
    upn: str | None = None,
    enrolled: str = "2026-01-05T09:00:00Z",
    expires: str = "",
) -> list[str]:
    return [
        catalog,
        catalog_name,
        course,
        title or f"Course {course}",
        status,
        user,
        upn if upn is not None else f"{user}@contoso.com",
        role,
        enrolled,
        expires,
    ]


def write_csv(
    path: Path, rows: Iterable[list[str]], *, header: Iterable[str] = HEADER, newline: str = "\n", bom: bool = False
) -> Path:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(list(header))
    w.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


def run_import(
    engine: Engine, settings: Settings, path: Path, *, replace: bool = False, now: datetime = NOW
) -> ImportResult:
    with session_scope(engine) as s:
        return import_enrollments(s, settings, TENANT, path, replace=replace, now=now)


def open_seats(engine: Engine) -> dict[str, str]:
    t = Seat.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        q = select(t.c.holder, t.c.acquire_reason).where(t.c.tenant == TENANT, t.c.released_at.is_(None))
        return dict(c.execute(q).all())


def freed(engine: Engine) -> dict[str, str]:
    t = Seat.__table__  # type: ignore[attr-defined]
    with engine.connect() as c:
        q = select(t.c.holder, t.c.release_reason).where(t.c.tenant == TENANT, t.c.released_at.is_not(None))
        return dict(c.execute(q).all())


def rows_of(engine: Engine, model: Any) -> list[tuple[Any, ...]]:
    t = model.__table__
    with engine.connect() as c:
        return sorted((tuple(r) for r in c.execute(select(t)).all()), key=repr)


def snapshot_tables(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    return {m.__tablename__: rows_of(engine, m) for m in TABLES}


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(model.__table__)).scalar_one()
