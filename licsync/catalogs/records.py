"""Catalog facts as plain, immutable records (see ``licsync.catalogs``), and what a write changed."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import NamedTuple, Protocol

COURSE_STATUSES = ("published", "unpublished", "deleted")
ROLES = ("learner", "admin")
DEFAULT_SOURCE = "csv"  # the owner of catalogs that have no catalog row


def parse_instant(text: str) -> datetime:
    """An ISO-8601 date or date-time as aware UTC; no offset means UTC. Raises ValueError."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class CatalogRecord(NamedTuple):
    id: str
    name: str = ""
    admins: tuple[str, ...] | None = None  # None: the source does not say (keep what is stored)


class CourseRecord(NamedTuple):
    id: str
    catalog_id: str
    title: str = ""
    status: str = "published"  # published | unpublished | deleted


class LearnerRecord(NamedTuple):
    """One entry of a catalog's learner list."""

    catalog_id: str
    user_id: str
    added_at: datetime | None = None


class EnrollmentRecord(NamedTuple):
    """A learner enrollment (``role="learner"``) or an admin assignment (``role="admin"``)."""

    course_id: str
    user_id: str
    role: str = "learner"
    enrolled_at: datetime | None = None
    expires_at: datetime | None = None
    upn: str | None = None


class ActivationRecord(NamedTuple):
    """An add-on identity that counts on activation (Flow365), active while ``deactivated_at`` is None."""

    identity_id: str
    product: str = "flow365"
    display_name: str | None = None
    activated_at: datetime | None = None
    deactivated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """What a source knows, read whole before anything is written.

    ``complete_courses``: the course list is complete, so a course of an owned catalog that is
    missing from it was deleted upstream (LMS365 leaves deleted courses out of its listings). The
    CSV contract cannot say that (a course without enrollments has no row), so it is False there.
    ``activations`` is None when the source knows nothing about add-on identities.
    """

    catalogs: Sequence[CatalogRecord] = ()
    courses: Sequence[CourseRecord] = ()
    learners: Sequence[LearnerRecord] = ()
    enrollments: Sequence[EnrollmentRecord] = ()
    activations: Sequence[ActivationRecord] | None = None
    complete_courses: bool = False


class CatalogSource(Protocol):
    """Anything that can produce a snapshot of a tenant's catalogs (read-only, no DB access)."""

    name: str  # the ``catalog.source`` it owns: csv | odata

    def snapshot(self) -> CatalogSnapshot: ...


class UserIds(AbstractSet[str]):
    """Distinct user ids in sorted order: a set to test and compare, a tuple in memory.

    A first import can affect every user of a large tenant; as a tuple a million ids cost 8 MB
    beyond the strings, which the re-plan holds anyway, where a ``set`` would add 30–60 MB.
    Set operations (``|``, ``&``, ``-``) give a plain ``set``.
    """

    __slots__ = ("_ids",)

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: tuple[str, ...] = tuple(sorted(set(ids)))

    @classmethod
    def from_sorted(cls, ids: Iterable[str]) -> UserIds:
        """From ids already distinct and sorted (a database read with ORDER BY); checked, sorted if not."""
        out = cls.__new__(cls)
        items = tuple(ids)
        in_order = all(a < b for a, b in pairwise(items))
        out._ids = items if in_order else tuple(sorted(set(items)))
        return out

    @classmethod
    def _from_iterable(cls, it: Iterable[str]) -> set[str]:
        return set(it)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        i = bisect_left(self._ids, value)
        return i < len(self._ids) and self._ids[i] == value

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        head = ", ".join(repr(i) for i in self._ids[:5])
        return f"UserIds({len(self._ids)}: {head}{', …' if len(self._ids) > 5 else ''})"


@dataclass
class Applied:
    """What :func:`apply_snapshot` changed. ``affected`` are the users to re-plan, in sorted order."""

    affected: UserIds = field(default_factory=UserIds)
    catalogs_added: int = 0
    catalogs_updated: int = 0
    courses_added: int = 0
    courses_updated: int = 0  # title, catalog or status changed (deletions included)
    courses_deleted: int = 0  # of which newly deleted (explicitly, or gone from a complete listing)
    enrollments_added: int = 0  # learner enrollments
    enrollments_updated: int = 0  # dates or UPN changed (both roles)
    enrollments_removed: int = 0
    admins_added: int = 0  # admin assignments
    admins_removed: int = 0
    learners_added: int = 0  # learner-list entries
    learners_removed: int = 0
    activations_changed: int = 0
    skipped: int = 0  # records naming a course or catalog the snapshot does not hold

    @property
    def courses_changed(self) -> int:
        return self.courses_added + self.courses_updated

    @property
    def rows_written(self) -> int:
        return (
            self.enrollments_added
            + self.enrollments_updated
            + self.enrollments_removed
            + self.admins_added
            + self.admins_removed
            + self.learners_added
            + self.learners_removed
        )

    @property
    def changed(self) -> bool:
        return any(
            (
                self.catalogs_added,
                self.catalogs_updated,
                self.courses_changed,
                self.enrollments_added,
                self.enrollments_updated,
                self.enrollments_removed,
                self.admins_added,
                self.admins_removed,
                self.learners_added,
                self.learners_removed,
                self.activations_changed,
            )
        )

    def counts(self) -> dict[str, int]:
        return {
            "catalogs_added": self.catalogs_added,
            "catalogs_updated": self.catalogs_updated,
            "courses_added": self.courses_added,
            "courses_updated": self.courses_updated,
            "courses_deleted": self.courses_deleted,
            "enrollments_added": self.enrollments_added,
            "enrollments_updated": self.enrollments_updated,
            "enrollments_removed": self.enrollments_removed,
            "admins_added": self.admins_added,
            "admins_removed": self.admins_removed,
            "learners_added": self.learners_added,
            "learners_removed": self.learners_removed,
            "activations_changed": self.activations_changed,
            "skipped": self.skipped,
            "affected_users": len(self.affected),
        }
