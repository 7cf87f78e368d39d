"""The one writer of catalog facts: diff a snapshot against the tenant's rows, write the difference.

Everything goes through SQLAlchemy Core with ``executemany`` (no ORM object per row), so an import
of hundreds of thousands of enrollments costs seconds. The tenant's current rows are read once into
dictionaries, the difference is computed in memory, and only rows that really change are written:
applying the same snapshot twice writes nothing the second time and affects no user.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, delete, insert, select, type_coerce, update
from sqlmodel import Session

from licsync.catalogs import DEFAULT_SOURCE, Applied, CatalogSnapshot
from licsync.catalogs.bulk import executemany, utc_reader
from licsync.db.models import Activation, Catalog, Course, Enrollment, LearnerListEntry

_CA = Catalog.__table__  # type: ignore[attr-defined]
_CO = Course.__table__  # type: ignore[attr-defined]
_E = Enrollment.__table__  # type: ignore[attr-defined]
_L = LearnerListEntry.__table__  # type: ignore[attr-defined]
_A = Activation.__table__  # type: ignore[attr-defined]

_T = bindparam("b_tenant")

_UPDATE_CATALOG = (
    update(_CA)
    .where(_CA.c.tenant == _T, _CA.c.id == bindparam("b_id"))
    .values(name=bindparam("b_name"), source=bindparam("b_source"), admins=bindparam("b_admins"))
)
_UPDATE_COURSE = (
    update(_CO)
    .where(_CO.c.tenant == _T, _CO.c.id == bindparam("b_id"))
    .values(
        catalog_id=bindparam("b_catalog"),
        title=bindparam("b_title"),
        status=bindparam("b_status"),
        changed_at=bindparam("b_at"),
    )
)
_ENROLLMENT_KEY = (
    _E.c.tenant == _T,
    _E.c.course_id == bindparam("b_course"),
    _E.c.user_id == bindparam("b_user"),
    _E.c.role == bindparam("b_role"),
)
_UPDATE_ENROLLMENT = (
    update(_E)
    .where(*_ENROLLMENT_KEY)
    .values(enrolled_at=bindparam("b_enrolled"), expires_at=bindparam("b_expires"), upn=bindparam("b_upn"))
)
_DELETE_ENROLLMENT = delete(_E).where(*_ENROLLMENT_KEY)
_DELETE_LEARNER = delete(_L).where(
    _L.c.tenant == _T, _L.c.catalog_id == bindparam("b_catalog"), _L.c.user_id == bindparam("b_user")
)
_UPDATE_ACTIVATION = (
    update(_A)
    .where(_A.c.tenant == _T, _A.c.identity_id == bindparam("b_id"))
    .values(
        product=bindparam("b_product"),
        display_name=bindparam("b_name"),
        activated_at=bindparam("b_activated"),
        deactivated_at=bindparam("b_deactivated"),
    )
)

EnrollmentKey = tuple[str, str, str]  # course, user, role


def apply(
    session: Session, tenant: str, snap: CatalogSnapshot, now: datetime, *, source: str, replace: bool
) -> Applied:
    """See :func:`licsync.catalogs.apply_snapshot`."""
    conn = session.connection()
    out = Applied()

    def run(stmt: Any, rows: list[dict[str, Any]]) -> None:
        executemany(conn, stmt, rows)

    # ------------------------------------------------------------------ catalogs
    stored_cats: dict[str, tuple[str, str, Any]] = {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(select(_CA.c.id, _CA.c.name, _CA.c.source, _CA.c.admins).where(_CA.c.tenant == tenant))
    }
    snap_cats = {c.id: c for c in snap.catalogs}
    cat_rows: list[dict[str, Any]] = []
    cat_updates: list[dict[str, Any]] = []
    for c in snap_cats.values():
        old = stored_cats.get(c.id)
        admins = list(c.admins) if c.admins is not None else (old[2] if old else None)
        if old is None:
            cat_rows.append({"tenant": tenant, "id": c.id, "name": c.name, "source": source, "admins": admins})
        elif old != (c.name, source, admins):
            cat_updates.append(
                {"b_tenant": tenant, "b_id": c.id, "b_name": c.name, "b_source": source, "b_admins": admins}
            )
    run(insert(_CA), cat_rows)
    run(_UPDATE_CATALOG, cat_updates)
    out.catalogs_added, out.catalogs_updated = len(cat_rows), len(cat_updates)

    def owned(catalog_id: str | None) -> bool:
        """Does a replace by ``source`` speak for this catalog?"""
        if catalog_id in snap_cats:
            return True
        old = stored_cats.get(catalog_id) if catalog_id is not None else None
        return (old[1] if old else DEFAULT_SOURCE) == source

    # ------------------------------------------------------------------ courses
    stored_courses: dict[str, tuple[str, str, str]] = {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            select(_CO.c.id, _CO.c.catalog_id, _CO.c.title, _CO.c.status).where(_CO.c.tenant == tenant)
        )
    }
    snap_courses = {c.id: c for c in snap.courses}
    final_courses = dict(stored_courses)
    relevant: set[str] = set()  # courses whose learners must be re-planned
    course_rows: list[dict[str, Any]] = []
    course_updates: list[dict[str, Any]] = []

    def change_course(cid: str, new: tuple[str, str, str], old: tuple[str, str, str]) -> None:
        course_updates.append(
            {"b_tenant": tenant, "b_id": cid, "b_catalog": new[0], "b_title": new[1], "b_status": new[2], "b_at": now}
        )
        final_courses[cid] = new
        if (new[0], new[2]) != (old[0], old[2]):
            relevant.add(cid)
        if new[2] == "deleted" and old[2] != "deleted":
            out.courses_deleted += 1

    for c in snap_courses.values():
        new = (c.catalog_id, c.title, c.status)
        old_course = stored_courses.get(c.id)
        if old_course is None:
            course_rows.append(
                {
                    "tenant": tenant,
                    "id": c.id,
                    "catalog_id": c.catalog_id,
                    "title": c.title,
                    "status": c.status,
                    "changed_at": now,
                }
            )
            final_courses[c.id] = new
            relevant.add(c.id)  # enrollment rows that waited for their course now count
        elif old_course != new:
            change_course(c.id, new, old_course)
    if replace and snap.complete_courses:
        for cid, old_course in stored_courses.items():
            if cid not in snap_courses and old_course[2] != "deleted" and owned(old_course[0]):
                change_course(cid, (old_course[0], old_course[1], "deleted"), old_course)
    run(insert(_CO), course_rows)
    run(_UPDATE_COURSE, course_updates)
    out.courses_added, out.courses_updated = len(course_rows), len(course_updates)

    # ------------------------------------------------------------------ enrollments (both roles)
    utc = utc_reader()
    stored_enr: dict[EnrollmentKey, tuple[Any, Any, Any]] = {
        (r[0], r[1], r[2]): (utc(r[3]), utc(r[4]), r[5])
        for r in conn.execute(
            select(
                _E.c.course_id,
                _E.c.user_id,
                _E.c.role,
                type_coerce(_E.c.enrolled_at, String),  # converted below, once per distinct value
                type_coerce(_E.c.expires_at, String),
                _E.c.upn,
            ).where(_E.c.tenant == tenant)
        )
    }
    snap_enr: dict[EnrollmentKey, tuple[Any, Any, Any]] = {}
    for e in snap.enrollments:
        if e.course_id not in final_courses:
            out.skipped += 1
            continue
        snap_enr[(e.course_id, e.user_id, e.role)] = (e.enrolled_at, e.expires_at, e.upn)
    enr_rows: list[dict[str, Any]] = []
    enr_updates: list[dict[str, Any]] = []
    for key, vals in snap_enr.items():
        old_vals = stored_enr.get(key)
        if old_vals is None:
            enr_rows.append(
                {
                    "tenant": tenant,
                    "course_id": key[0],
                    "user_id": key[1],
                    "role": key[2],
                    "enrolled_at": vals[0],
                    "expires_at": vals[1],
                    "upn": vals[2],
                }
            )
            out.affected.add(key[1])
            if key[2] == "admin":
                out.admins_added += 1
            else:
                out.enrollments_added += 1
        elif old_vals != vals:
            enr_updates.append(
                _enrollment_params(tenant, key) | {"b_enrolled": vals[0], "b_expires": vals[1], "b_upn": vals[2]}
            )
            out.affected.add(key[1])  # a new expiry or enrolment date can move the seat (live_enrollment)
    enr_deletes: list[dict[str, Any]] = []
    if replace:
        for key in stored_enr:
            if key in snap_enr:
                continue
            course = final_courses.get(key[0])
            # Enrollments of deleted courses stay: they no longer count, and the seat is freed as
            # course_deleted rather than as a vanished enrollment.
            if owned(course[0] if course else None) and (course is None or course[2] != "deleted"):
                enr_deletes.append(_enrollment_params(tenant, key))
                out.affected.add(key[1])
                if key[2] == "admin":
                    out.admins_removed += 1
                else:
                    out.enrollments_removed += 1
    run(insert(_E), enr_rows)
    run(_UPDATE_ENROLLMENT, enr_updates)
    run(_DELETE_ENROLLMENT, enr_deletes)
    out.enrollments_updated = len(enr_updates)

    if relevant:
        for keys in (stored_enr, snap_enr):
            out.affected.update(k[1] for k in keys if k[0] in relevant and k[2] == "learner")

    # ------------------------------------------------------------------ learner lists
    known_catalogs = set(stored_cats) | set(snap_cats) | {c[0] for c in final_courses.values()}
    stored_learners = {
        (r[0], r[1]) for r in conn.execute(select(_L.c.catalog_id, _L.c.user_id).where(_L.c.tenant == tenant))
    }
    snap_learners: dict[tuple[str, str], datetime | None] = {}
    for entry in snap.learners:
        if entry.catalog_id not in known_catalogs:
            out.skipped += 1
            continue
        key2 = (entry.catalog_id, entry.user_id)
        prev = snap_learners.get(key2)
        snap_learners[key2] = entry.added_at if prev is None else min(prev, entry.added_at or prev)
    learner_rows = [
        {"tenant": tenant, "catalog_id": k[0], "user_id": k[1], "added_at": added or now}
        for k, added in snap_learners.items()
        if k not in stored_learners
    ]
    learner_deletes = (
        [
            {"b_tenant": tenant, "b_catalog": k[0], "b_user": k[1]}
            for k in stored_learners
            if k not in snap_learners and owned(k[0])
        ]
        if replace
        else []
    )
    run(insert(_L), learner_rows)
    run(_DELETE_LEARNER, learner_deletes)
    out.learners_added, out.learners_removed = len(learner_rows), len(learner_deletes)
    out.affected.update(r["user_id"] for r in learner_rows)
    out.affected.update(r["b_user"] for r in learner_deletes)

    if snap.activations is not None:
        _apply_activations(conn.execute, tenant, snap, out)
    return out


def _enrollment_params(tenant: str, key: EnrollmentKey) -> dict[str, Any]:
    return {"b_tenant": tenant, "b_course": key[0], "b_user": key[1], "b_role": key[2]}


def _apply_activations(execute: Callable[..., Any], tenant: str, snap: CatalogSnapshot, out: Applied) -> None:
    """Upsert add-on identities. Absence never deactivates: only an explicit ``deactivated_at`` does."""
    stored = {
        r[0]: (r[1], r[2], r[3], r[4])
        for r in execute(
            select(_A.c.identity_id, _A.c.product, _A.c.display_name, _A.c.activated_at, _A.c.deactivated_at).where(
                _A.c.tenant == tenant
            )
        )
    }
    rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for a in {a.identity_id: a for a in snap.activations or ()}.values():
        vals = (a.product, a.display_name, a.activated_at, a.deactivated_at)
        old = stored.get(a.identity_id)
        if old is None:
            rows.append(
                {
                    "tenant": tenant,
                    "identity_id": a.identity_id,
                    "product": a.product,
                    "display_name": a.display_name,
                    "activated_at": a.activated_at,
                    "deactivated_at": a.deactivated_at,
                }
            )
            out.affected.add(a.identity_id)
        elif old != vals:
            updates.append(
                {
                    "b_tenant": tenant,
                    "b_id": a.identity_id,
                    "b_product": a.product,
                    "b_name": a.display_name,
                    "b_activated": a.activated_at,
                    "b_deactivated": a.deactivated_at,
                }
            )
            if (old[3] is None) != (a.deactivated_at is None):
                out.affected.add(a.identity_id)
    if rows:
        execute(insert(_A), rows)
    if updates:
        execute(_UPDATE_ACTIVATION, updates)
    out.activations_changed = len(rows) + len(updates)
