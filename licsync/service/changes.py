"""Use cases that change facts: each writes through its adapter, then re-plans what it touched
with ``licsync.reseat`` (plan → guarded apply → follow-ups → grace → notify), in the caller's
transaction. The adapters only return the ids they touched; none of them applies a plan."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from licsync import leasing, reseat, users
from licsync.catalogs import activations, csv_import, learners
from licsync.catalogs.activations import ActivationImport
from licsync.catalogs.csv_import import ImportResult
from licsync.catalogs.learners import LearnerRemoval
from licsync.config import Settings
from licsync.db.models import AuditLog, MassFreeHold
from licsync.seat_models import access_store, live_store, role_store
from licsync.seat_models.access_store import IngestResult
from licsync.seat_models.live_store import UserSyncResult
from licsync.seat_models.role_store import RoleImportResult


def _outcome(result: Any, step: reseat.Step) -> None:
    """Copy a step's takes, frees, refusals and hold onto an import's result."""
    p = step.plan
    result.seats_taken = len(p.takes)
    if hasattr(result, "seats_refused"):
        result.seats_refused = len(p.refused)
    result.hold_id, result.hold_reason = step.hold_id, step.hold_reason
    if step.hold_id:
        result.frees_held = len(p.frees)
    else:
        result.seats_freed = len(p.frees)


def import_enrollments(session: Session, settings: Settings, tenant: str, path: Path, *, replace: bool,
                       now: datetime, actor: str = "cli") -> ImportResult:
    """Validate ``path`` whole, apply it, re-plan the affected users, audit."""
    result = csv_import.read_file(session, tenant, path, replace=replace, now=now, limits=settings.imports)
    if result.applied.affected:
        _outcome(result, reseat.reseat(session, settings, tenant, result.applied.affected, now, actor=actor))
    csv_import.audit(session, result, now, actor)
    return result


def import_activations(session: Session, settings: Settings, tenant: str, path: Path, *, replace: bool,
                       now: datetime, actor: str = "cli") -> ActivationImport:
    """Add-on accounts that count on activation (Flow365): write them, re-plan them, audit."""
    result = activations.import_file(session, tenant, path, replace=replace, now=now)
    if result.touched:
        _outcome(result, reseat.reseat(session, settings, tenant, result.touched, now, actor=actor))
    activations.audit(session, result, now, actor)
    return result


def remove_learner(session: Session, settings: Settings, tenant: str, catalog_id: str, user: str, now: datetime,
                   actor: str = "cli") -> LearnerRemoval:
    """Off the catalog's learner list and its training; the user is planned while the enrollments are
    still there, so the freed seat says ``removed_from_learner_list`` (see ``catalogs.learners``)."""
    user_id = users.resolve(session, tenant, user)
    source = learners.unlist(session, tenant, catalog_id, user_id)
    step = reseat.plan(session, tenant, [user_id], now)
    removed = learners.unenroll(session, tenant, catalog_id, user_id)
    reseat.apply(session, settings, step, now, actor=actor)
    free = next((c for c in step.plan.frees if c.holder == user_id), None)
    result = LearnerRemoval(tenant=tenant, catalog_id=catalog_id, user_id=user_id, enrollments_removed=removed,
                            seat_freed=free is not None and step.hold_id is None,
                            reason=str(free.reason) if free else None, hold_id=step.hold_id, catalog_source=source)
    learners.audit(session, result, now, actor)
    return result


def sync_users(session: Session, settings: Settings, tenant: str, path: Path, *, apply: bool, now: datetime,
               actor: str = "cli") -> UserSyncResult:
    """The user sync CSV (seed 001): delete the users absent from it (``apply``) and free their seats."""
    result = live_store.sync_users(session, tenant, path, apply=apply, now=now)
    if not apply or not result.deleted:
        return result
    _outcome(result, reseat.reseat(session, settings, tenant, result.deleted, now, actor=actor))
    session.connection().execute(insert(AuditLog.__table__), [{  # type: ignore[attr-defined]
        "at": now, "tenant": tenant, "actor": actor, "action": "users_synced", "subject": result.file,
        "detail": result.summary()}])
    return result


def import_activity(session: Session, settings: Settings, tenant: str, path: Path, now: datetime, *,
                    actor: str = "cli") -> IngestResult:
    """Launches (first interactions) from a CSV: record them, then the seats follow the consumption."""
    result = access_store.import_activity(session, settings, tenant, path, now, actor=actor)
    reseat.reseat(session, settings, tenant, None, now, actor=actor)
    return result


def ingest_statements(session: Session, settings: Settings, tenant: str, statements: list[dict[str, Any]],
                      now: datetime, *, actor: str = "api") -> IngestResult:
    """xAPI-style statements from the API: as :func:`import_activity`."""
    result = access_store.ingest_statements(session, tenant, statements, now, settings=settings, actor=actor)
    reseat.reseat(session, settings, tenant, None, now, actor=actor)
    return result


def import_roles(session: Session, settings: Settings, tenant: str, path: Path, *, replace: bool, now: datetime,
                 actor: str = "cli") -> RoleImportResult:
    """Roles → pool seats under the pool lock; then grace and notifications see the new count."""
    result = role_store.import_roles(session, settings, tenant, path, replace=replace, now=now, actor=actor)
    reseat.reseat(session, settings, tenant, [], now, actor=actor)
    return result


def activate(session: Session, settings: Settings, tenant: str, key_text: str, now: datetime, *,
             actor: str = "cli") -> Any:
    """Verify and activate a key (moving it from another tenant); grace and mails follow."""
    result = leasing.activate(session, settings, settings.get_tenant(tenant), key_text, now, actor=actor)
    if result.outcome not in ("already_active", "leased"):  # the same key again: nothing changed, nothing to tell
        reseat.after_activation(session, settings, result, now)
    return result


def approve_hold(session: Session, settings: Settings, hold_id: str, now: datetime, *,
                 actor: str = "cli") -> tuple[int, int] | None:
    """Apply a held mass free. Each held user is re-planned against today's facts first, so a user
    who qualifies again by now keeps the seat. Returns (freed, kept) or None when no such pending hold."""
    hold = session.get(MassFreeHold, hold_id)
    if hold is None or hold.status != "pending":
        return None
    held = [h for h, _reason in (hold.plan or [])]
    step = reseat.only_frees(reseat.plan(session, hold.tenant, held, now), held)
    reseat.apply(session, settings, step, now, actor=actor, guard=False)
    freed = len(step.plan.frees)
    hold.status, hold.decided_at, hold.decided_by = "approved", now, actor
    session.add(AuditLog(at=now, tenant=hold.tenant, actor=actor, action="mass_free_approved", subject=hold_id,
                         detail={"freed": freed, "kept": len(held) - freed}))
    return freed, len(held) - freed
