"""Database adapter of the organisations (``licsync import orgs`` / ``licsync report orgs``).

The import makes the file the whole organisation tree of the tenant (organisations and catalog
links absent from it are removed) in the caller's transaction. The report counts, per catalog,
the seat holders with a live enrollment in it, and rolls them up the tree (``orgs.rollup``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlmodel import Session

from licsync import ledger
from licsync.db.models import AuditLog, Course, Enrollment, LearnerListEntry, Seat
from licsync.db.models_seat_models import Organisation, OrgCatalog
from licsync.errors import InputError
from licsync.seat_models import orgs as org_rules

_S = Seat.__table__  # type: ignore[attr-defined]
_E = Enrollment.__table__  # type: ignore[attr-defined]
_CO = Course.__table__  # type: ignore[attr-defined]
_L = LearnerListEntry.__table__  # type: ignore[attr-defined]
_O = Organisation.__table__  # type: ignore[attr-defined]
_OC = OrgCatalog.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OrgImportResult:
    tenant: str
    file: str
    orgs: int
    catalogs: int
    removed: int

    def summary(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "file": self.file, "orgs": self.orgs, "catalogs": self.catalogs,
                "removed": self.removed}

    def line(self) -> str:
        return (f"{self.tenant}: imported {self.orgs} organisation(s) with {self.catalogs} catalog link(s) "
                f"from {self.file}; {self.removed} organisation(s) no longer in the file removed")


def import_orgs(session: Session, tenant: str, path: Path, now: datetime, actor: str = "cli") -> OrgImportResult:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    parsed = org_rules.parse_orgs(data)
    conn = session.connection()
    before = {r[0] for r in conn.execute(select(_O.c.id).where(_O.c.tenant == tenant))}
    conn.execute(delete(_OC).where(_OC.c.tenant == tenant))
    conn.execute(delete(_O).where(_O.c.tenant == tenant))
    if parsed:
        conn.execute(insert(_O), [{"tenant": tenant, "id": o.id, "name": o.name, "parent_id": o.parent_id,
                                   "user_limit": o.user_limit, "imported_at": now} for o in parsed])
    links = [{"tenant": tenant, "catalog_id": c, "org_id": o.id} for o in parsed for c in o.catalogs]
    if links:
        conn.execute(insert(_OC), links)
    result = OrgImportResult(tenant, Path(path).name, len(parsed), len(links),
                             len(before - {o.id for o in parsed}))
    conn.execute(insert(AuditLog.__table__), [{  # type: ignore[attr-defined]
        "at": now, "tenant": tenant, "actor": actor, "action": "orgs_imported", "subject": result.file,
        "detail": result.summary()}])
    return result


def load_orgs(session: Session, tenant: str) -> list[org_rules.Org]:
    conn = session.connection()
    cats: dict[str, list[str]] = defaultdict(list)
    for cat, org in conn.execute(select(_OC.c.catalog_id, _OC.c.org_id).where(_OC.c.tenant == tenant)):
        cats[org].append(cat)
    return [org_rules.Org(r[0], r[1], r[2], r[3], tuple(sorted(cats.get(r[0], []))))
            for r in conn.execute(select(_O.c.id, _O.c.name, _O.c.parent_id, _O.c.user_limit)
                                  .where(_O.c.tenant == tenant))]


def holders_by_catalog(session: Session, tenant: str, now: datetime) -> dict[str, set[str]]:
    """Per catalog, the seat holders with a live enrollment in it (course not deleted, on the list)."""
    q = ledger.counting_catalogs(tenant, None).where(or_(_E.c.expires_at.is_(None), _E.c.expires_at > now))
    out: dict[str, set[str]] = defaultdict(set)
    for cat, holder in session.connection().execute(q):
        out[cat].add(holder)
    return out


def org_report(session: Session, tenant: str, now: datetime) -> list[org_rules.OrgRow]:
    return org_rules.rollup(load_orgs(session, tenant), holders_by_catalog(session, tenant, now))
