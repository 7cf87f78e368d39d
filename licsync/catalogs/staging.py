"""Staging tables: a snapshot's enrollments and learner-list entries, held by the database, not by Python.

An import of millions of rows must not hold the tenant in memory. The writer loads what a source
says into temporary tables of its own connection — in chunks, COPY on PostgreSQL — and diffs them
against the tenant's rows with set-based SQL (``licsync.catalogs.store``), in the caller's
transaction. The tables are private to the connection and dropped when the writer is done; a
leftover of a failed import on a pooled SQLite connection is dropped by the next one.

Tables (every name starts with ``licsync_stage_``):

* ``enrollment`` — what the source says, one row per record (``seq``: the CSV line, or the
  record's position); duplicates are allowed until :meth:`Staging.drop_duplicates`.
* ``learner`` — the learner lists the source says, one row per ``(catalog_id, user_id)``.
* ``enrollment_change`` / ``learner_change`` — the difference, one row per row to write
  (``op``: ``i`` insert, ``u`` update, ``d`` delete), filled by the writer.
* ``affected`` — the users to re-plan, each once; :meth:`Staging.affected_ids` reads them sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, and_, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateTable, DropTable
from sqlmodel import Session

from licsync.catalogs.records import UserIds
from licsync.db import analyze
from licsync.db.bulk import load
from licsync.db.models import Course, UTCDateTime

_CO = Course.__table__  # type: ignore[attr-defined]
_MD = MetaData()
IN_CHUNK = 1000  # values per IN list


def _temp(name: str, *columns: Column[Any]) -> Table:
    return Table(name, _MD, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")


ENROLLMENTS = _temp(
    "licsync_stage_enrollment",
    Column("seq", Integer, nullable=False),
    Column("course_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    Column("role", String, nullable=False),
    Column("enrolled_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
    Column("upn", String),
)
LEARNERS = _temp(
    "licsync_stage_learner",
    Column("catalog_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    Column("added_at", UTCDateTime()),
)
ENROLLMENT_CHANGES = _temp(
    "licsync_stage_enrollment_change",
    Column("op", String, nullable=False),
    Column("course_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    Column("role", String, nullable=False),
    Column("enrolled_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
    Column("upn", String),
)
LEARNER_CHANGES = _temp(
    "licsync_stage_learner_change",
    Column("op", String, nullable=False),
    Column("catalog_id", String, nullable=False),
    Column("user_id", String, nullable=False),
    Column("added_at", UTCDateTime()),
)
AFFECTED = Table(
    "licsync_stage_affected",
    _MD,
    Column("user_id", String, primary_key=True),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
    sqlite_with_rowid=False,
)
TABLES = (ENROLLMENTS, LEARNERS, ENROLLMENT_CHANGES, LEARNER_CHANGES, AFFECTED)

# Built once their table is loaded (one sort, cheaper than keeping an index up to date row by row);
# ``CreateTable`` leaves them out. SQLite: the enrollments' key index covers every column, so its
# nested loops read the staged rows in key order without going back to the table, and probe the
# tenant's rows in the order of their primary key. PostgreSQL hashes: a unique key index is all it
# needs, and building it tells whether the file repeats a key (the index on ``seq`` then).
_KEY = ("course_id", "user_id", "role")
_ENROLLMENT_COVERING = Index(
    "licsync_stage_enrollment_covering",
    *(ENROLLMENTS.c[c] for c in (*_KEY, "seq", "enrolled_at", "expires_at", "upn")),
)
_ENROLLMENT_UNIQUE = Index("licsync_stage_enrollment_unique", *(ENROLLMENTS.c[c] for c in _KEY), unique=True)
_ENROLLMENT_KEY = Index("licsync_stage_enrollment_key", *(ENROLLMENTS.c[c] for c in (*_KEY, "seq")))
_LEARNER_KEY = Index("licsync_stage_learner_key", LEARNERS.c.catalog_id, LEARNERS.c.user_id, unique=True)


def same_key(a: Table, b: Table, columns: Iterable[str] = _KEY) -> Any:
    return and_(*(a.c[c] == b.c[c] for c in columns))


class Staging:
    """The staging tables of one write, on the session's connection (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.conn: Connection = session.connection()
        self.postgres = self.conn.dialect.name == "postgresql"
        self.indexed = False
        self._duplicates: bool | None = None

    def _create(self) -> None:
        for table in TABLES:
            self.conn.execute(DropTable(table, if_exists=True))  # a leftover of a failed import (SQLite)
            self.conn.execute(CreateTable(table))

    def _drop(self) -> None:
        for table in TABLES:
            self.conn.execute(DropTable(table, if_exists=True))

    # ------------------------------------------------------------------ loading

    def add_enrollments(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Append ``(seq, course_id, user_id, role, enrolled_at, expires_at, upn)`` rows (before :meth:`index`)."""
        return load(self.conn, ENROLLMENTS, rows)

    def add_learners(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Append ``(catalog_id, user_id, added_at)`` rows, one per entry (the caller merges repeats)."""
        return load(self.conn, LEARNERS, rows)

    def learners_from_enrollments(self, tenant: str) -> None:
        """The CSV's learner lists: each learner row puts its user on its course's catalog (the earliest date)."""
        s, co = ENROLLMENTS, _CO
        q = (
            select(co.c.catalog_id, s.c.user_id, func.min(s.c.enrolled_at))
            .select_from(s.join(co, and_(co.c.tenant == tenant, co.c.id == s.c.course_id)))
            .where(s.c.role == "learner")
            .group_by(co.c.catalog_id, s.c.user_id)
        )
        self.conn.execute(LEARNERS.insert().from_select(["catalog_id", "user_id", "added_at"], q))

    def index(self) -> None:
        """Index the loaded enrollments by key (and, on PostgreSQL, give the planner their statistics)."""
        if self.indexed:
            return
        if not self.postgres:
            _ENROLLMENT_COVERING.create(self.conn)
        else:
            try:
                with self.conn.begin_nested():  # a failed CREATE would abort the whole transaction
                    _ENROLLMENT_UNIQUE.create(self.conn)
                self._duplicates = False
            except IntegrityError:
                _ENROLLMENT_KEY.create(self.conn)
                self._duplicates = True
            analyze(self.session, "licsync_stage_enrollment")  # temporary tables are never auto-analysed
        self.indexed = True

    def index_learners(self) -> None:
        _LEARNER_KEY.create(self.conn)
        if self.postgres:
            analyze(self.session, "licsync_stage_learner")

    # ------------------------------------------------------------------ duplicates

    def _duplicate_keys(self) -> Any:
        s = ENROLLMENTS
        return (
            select(
                s.c.course_id, s.c.user_id, s.c.role, func.min(s.c.seq).label("first"), func.max(s.c.seq).label("last")
            )
            .group_by(s.c.course_id, s.c.user_id, s.c.role)
            .having(func.count() > 1)
            .subquery("dup")
        )

    def has_duplicates(self) -> bool:
        self.index()
        if self._duplicates is None:
            dup = self._duplicate_keys()
            self._duplicates = self.conn.execute(select(dup.c.first).limit(1)).first() is not None
        return self._duplicates

    def conflicting_duplicates(self) -> Iterator[tuple[int, str, str, str, int]]:
        """``(seq, course_id, user_id, role, first seq)`` of each repeat whose dates or UPN differ from the first."""
        if not self.has_duplicates():
            return
        dup = self._duplicate_keys()
        first, later = ENROLLMENTS.alias("first"), ENROLLMENTS.alias("later")
        same = and_(
            later.c.enrolled_at.is_not_distinct_from(first.c.enrolled_at),
            later.c.expires_at.is_not_distinct_from(first.c.expires_at),
            later.c.upn.is_not_distinct_from(first.c.upn),
        )
        q = (
            select(later.c.seq, later.c.course_id, later.c.user_id, later.c.role, dup.c.first)
            .select_from(
                dup.join(first, and_(same_key(first, dup), first.c.seq == dup.c.first)).join(
                    later, and_(same_key(later, dup), later.c.seq > dup.c.first)
                )
            )
            .where(~same)
            .order_by(later.c.seq)
        )
        yield from self.conn.execute(q)

    def drop_duplicates(self) -> None:
        """Keep the last record of each enrollment key (a later record of a source overrides an earlier one)."""
        if not self.has_duplicates():
            return
        dup = self._duplicate_keys()
        s, other = ENROLLMENTS, ENROLLMENTS.alias("other")
        earlier = select(other.c.seq).select_from(dup.join(other, and_(same_key(other, dup), other.c.seq < dup.c.last)))
        self.conn.execute(s.delete().where(s.c.seq.in_(earlier)))
        self._duplicates = False

    # ------------------------------------------------------------------ affected users

    def add_affected(self, query: Any) -> None:
        """Users to re-plan: the first column of ``query``, each added once."""
        sub = query.subquery("new")
        user = sub.c[0]
        q = (
            select(user)
            .distinct()
            .where(~select(AFFECTED.c.user_id).where(AFFECTED.c.user_id == user).exists())
            .order_by(user)  # appended in key order: the index grows at its end
        )
        self.conn.execute(AFFECTED.insert().from_select(["user_id"], q))

    def add_affected_ids(self, ids: Iterable[str]) -> None:
        """Users to re-plan, given by Python (a few: the add-on identities that changed)."""
        new, known = sorted(set(ids)), set()
        col = AFFECTED.c.user_id
        for i in range(0, len(new), IN_CHUNK):
            known.update(r[0] for r in self.conn.execute(select(col).where(col.in_(new[i : i + IN_CHUNK]))))
        load(self.conn, AFFECTED, ((i,) for i in new if i not in known))

    def affected_ids(self) -> UserIds:
        """The users to re-plan, in code-point order (the order of Python's ``sorted``)."""
        col = AFFECTED.c.user_id
        q = select(col).order_by(col.collate("C") if self.postgres else col).execution_options(yield_per=20_000)
        return UserIds.from_sorted(r[0] for r in self.conn.execute(q))


@contextmanager
def staging(session: Session) -> Iterator[Staging]:
    """Create the staging tables for one write; drop them after it (a failed write rolls them back or leaves
    them empty for the next one to drop — dropping here could hide the error behind an aborted transaction)."""
    st = Staging(session)
    st._create()
    yield st
    st._drop()
