"""Bulk-load plumbing particular to the catalog tables (the generic part is :mod:`licsync.db.bulk`)."""

from __future__ import annotations

from sqlmodel import Session

from licsync.db import analyze
from licsync.db.models import Course, Enrollment, LearnerListEntry


def refresh_planner_stats(session: Session) -> None:
    """After a bulk load, refresh the query planner's statistics of the catalog tables.

    Without statistics SQLite may drive the seat queries from the course table and probe the
    enrollments once per course and holder (measured: 0.18 s → 0.02 s per 2,000 holders on 600k
    enrollments; the ANALYZE costs ~0.4 s), and PostgreSQL nests loops over rows it believes absent.
    """
    analyze(session, Enrollment.__tablename__, LearnerListEntry.__tablename__, Course.__tablename__)
