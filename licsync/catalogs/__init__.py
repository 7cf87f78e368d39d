"""Course-catalog adapters: where catalogs, courses, learner lists and enrollments come from.

A source (the CSV import, the LMS365-style OData connector) produces a :class:`CatalogSnapshot`
— plain, immutable records with no connection open. :func:`apply_snapshot` is the one writer: it
diffs the snapshot against the tenant's rows in the caller's session (so it shares the caller's
transaction) and returns the changes, among them the ids of the users whose seat facts changed
(enrollments, learner-list membership, or the status/catalog of a course they are enrolled in),
as sorted :class:`UserIds`. The caller re-plans exactly those users with
``licsync.reseat.reseat`` — reconciling is incremental: the work is proportional to the users
that changed, not to the tenant.

Enrollments and learner lists are diffed in the database, not in Python (``licsync.catalogs.store``
and ``.staging``): a snapshot's are loaded into temporary tables first. The CSV import, whose files
can hold millions of rows, streams its rows into those tables as it validates them and hands the
writer only the file's catalogs and courses, so its memory does not grow with the file.

Ownership: every catalog row has a ``source`` (``csv`` or ``odata``). Applying a snapshot with
``replace=True`` makes it the whole truth for the catalogs that source owns (those it names, and
those whose ``source`` is already that source; for ``csv`` also courses whose catalog has no row).
Catalogs owned by another source are never touched by a replace.
"""

from __future__ import annotations

from licsync.catalogs.records import (
    COURSE_STATUSES,
    DEFAULT_SOURCE,
    ROLES,
    ActivationRecord,
    Applied,
    CatalogRecord,
    CatalogSnapshot,
    CatalogSource,
    CourseRecord,
    EnrollmentRecord,
    LearnerRecord,
    UserIds,
    parse_instant,
)
from licsync.catalogs.store import apply as apply_snapshot

__all__ = [
    "COURSE_STATUSES",
    "DEFAULT_SOURCE",
    "ROLES",
    "ActivationRecord",
    "Applied",
    "CatalogRecord",
    "CatalogSnapshot",
    "CatalogSource",
    "CourseRecord",
    "EnrollmentRecord",
    "LearnerRecord",
    "UserIds",
    "apply_snapshot",
    "parse_instant",
]
