"""Bulk-load plumbing for the catalog writer: fast ``executemany``, GC pause, SQLite page cache, stats.

:func:`bulk_mode` makes large applies affordable: Python's cyclic GC is paused (millions of small
tuples would trigger full collections over and over) and SQLite gets a page cache that holds the
indexes being filled. On SQLite, large batches skip SQLAlchemy's per-row parameter processing
(values are converted once per distinct value by the column types' own bind processors).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlmodel import Session

from licsync.db import analyze
from licsync.db.models import Course, Enrollment, LearnerListEntry

FAST_MIN = 500  # batches from this size skip SQLAlchemy's per-row processing on SQLite
SQLITE_BULK_CACHE_KIB = 256 * 1024


def utc_reader() -> Callable[[Any], datetime | None]:
    """Stored instants (a string on SQLite, a naive UTC datetime elsewhere) as aware UTC, memoised."""
    memo: dict[Any, datetime | None] = {None: None}

    def read(raw: Any) -> datetime | None:
        try:
            return memo[raw]
        except KeyError:
            dt = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
            value = memo[raw] = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
            return value

    return read


def executemany(conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """``conn.execute(stmt, rows)``, minus SQLAlchemy's per-row overhead for large batches on SQLite."""
    if not rows:
        return
    if len(rows) < FAST_MIN or conn.dialect.name != "sqlite":
        conn.execute(stmt, rows)
        return
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    names = list(compiled.positiontup or ())
    procs = [_memo(compiled.binds[n].type.bind_processor(conn.dialect)) for n in names]
    plan = list(zip(names, procs, strict=True))
    conn.exec_driver_sql(compiled.string, [tuple(p(r[n]) if p else r[n] for n, p in plan) for r in rows])


def _memo(proc: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    if proc is None:
        return None
    memo: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            out = memo[value] = proc(value)
            return out
        except TypeError:  # unhashable (JSON)
            return proc(value)

    return convert


@contextmanager
def bulk_mode(session: Session) -> Iterator[None]:
    """Pause the cyclic GC and, on SQLite, widen the page cache, for the duration of a large apply."""
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar() if sqlite else None
    if sqlite:
        conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_BULK_CACHE_KIB}")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if sqlite and before is not None and not conn.closed:
            conn.exec_driver_sql(f"PRAGMA cache_size={int(before)}")


def refresh_planner_stats(session: Session) -> None:
    """After a bulk load, refresh the query planner's statistics of the catalog tables.

    Without statistics SQLite may drive the seat queries from the course table and probe the
    enrollments once per course and holder (measured: 0.18 s → 0.02 s per 2,000 holders on 600k
    enrollments; the ANALYZE costs ~0.4 s), and PostgreSQL nests loops over rows it believes absent.
    """
    analyze(session, Enrollment.__tablename__, LearnerListEntry.__tablename__, Course.__tablename__)
