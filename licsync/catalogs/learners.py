"""``licsync catalog remove-learner``: take a user off a catalog's learner list, and so off its training.

SPEC §1 (seeds 003, 004): removing a user from a catalog's learner list unenrolls them from all
training in that catalog; removed from the learner list of every catalog, they hold no seat. Admin
assignments are not training, so they stay.

Order matters for the reason recorded on the freed seat: the learner-list entry goes first, the
user is planned while their enrollments of that catalog are still present (so the planner sees
"enrolled, but not on the learner list" and says ``removed_from_learner_list``), then the
enrollments go and the plan is applied — all in the caller's transaction
(``licsync.service.remove_learner`` runs the steps: :func:`unlist`, plan, :func:`unenroll`, apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlmodel import Session

from licsync.db.models import AuditLog, Catalog, Course, Enrollment, LearnerListEntry
from licsync.errors import NotFound

_CA = Catalog.__table__  # type: ignore[attr-defined]
_CO = Course.__table__  # type: ignore[attr-defined]
_E = Enrollment.__table__  # type: ignore[attr-defined]
_L = LearnerListEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LearnerRemoval:
    tenant: str
    catalog_id: str
    user_id: str
    enrollments_removed: int
    seat_freed: bool
    reason: str | None  # the free's reason code, when a seat was freed (or held)
    hold_id: str | None
    catalog_source: str  # odata: the LMS connector's next pull restores the entry unless the LMS agrees

    def summary(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "catalog_id": self.catalog_id,
            "user_id": self.user_id,
            "enrollments_removed": self.enrollments_removed,
            "seat_freed": self.seat_freed,
            "reason": self.reason,
            "hold_id": self.hold_id,
            "catalog_source": self.catalog_source,
        }

    def line(self) -> str:
        text = (
            f"{self.tenant}: {self.user_id} removed from the learner list of catalog {self.catalog_id} "
            f"and from {self.enrollments_removed} enrollment(s) in it; "
        )
        if self.hold_id:
            text += f"seat free HELD for approval as {self.hold_id}"
        elif self.seat_freed:
            text += f"seat freed ({self.reason})"
        else:
            text += "seat unchanged"
        if self.catalog_source != "csv":
            text += f" [catalog fed by {self.catalog_source}: remove the learner in the LMS too]"
        return text


def unlist(session: Session, tenant: str, catalog_id: str, user_id: str) -> str:
    """Take the user off the catalog's learner list; returns the catalog's source (csv | odata)."""
    conn = session.connection()
    source = conn.execute(select(_CA.c.source).where(_CA.c.tenant == tenant, _CA.c.id == catalog_id)).scalar()
    if source is None:
        raise NotFound(f"tenant {tenant} has no catalog {catalog_id!r}")
    entry = (_L.c.tenant == tenant, _L.c.catalog_id == catalog_id, _L.c.user_id == user_id)
    if conn.execute(select(_L.c.user_id).where(*entry)).first() is None:
        raise NotFound(f"{user_id!r} is not on the learner list of catalog {catalog_id!r} (tenant {tenant})")
    conn.execute(delete(_L).where(*entry))
    return str(source)


def unenroll(session: Session, tenant: str, catalog_id: str, user_id: str) -> int:
    """Remove the user's learner enrollments in the catalog; returns how many went."""
    courses = select(_CO.c.id).where(_CO.c.tenant == tenant, _CO.c.catalog_id == catalog_id)
    return int(session.connection().execute(
        delete(_E).where(
            _E.c.tenant == tenant, _E.c.user_id == user_id, _E.c.role == "learner", _E.c.course_id.in_(courses)
        )
    ).rowcount)


def audit(session: Session, result: LearnerRemoval, now: datetime, actor: str) -> None:
    session.connection().execute(
        insert(AuditLog.__table__),  # type: ignore[attr-defined]
        [{"at": now, "tenant": result.tenant, "actor": actor, "action": "learner_removed",
          "subject": result.user_id, "detail": result.summary()}],
    )
