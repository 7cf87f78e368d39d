"""``licsync import activations``: add-on accounts that count on activation (Flow365, SPEC §1, seed 004).

Front-line accounts of an add-on product are not Entra users and need no enrollment: each holds a
seat of the ``enrollment`` model from its activation until its deactivation. The CSV (header
``user_id,display_name,product,activated_at,deactivated_at``) is validated whole and written in the
caller's transaction; the ids it touched are returned for the re-plan (``licsync.service``).
With ``replace`` the file is the whole truth: active accounts absent from it are deactivated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from licsync.catalogs.records import ActivationRecord, Applied, parse_instant
from licsync.db.models import Activation, AuditLog
from licsync.errors import InputError
from licsync.seat_models.csvfile import check_len, parse_all, require

HEADER = ("user_id", "display_name", "product", "activated_at", "deactivated_at")
_A = Activation.__table__  # type: ignore[attr-defined]
_UPDATE_ACTIVATION = (
    update(_A)
    .where(_A.c.tenant == bindparam("b_tenant"), _A.c.identity_id == bindparam("b_id"))
    .values(
        product=bindparam("b_product"),
        display_name=bindparam("b_name"),
        activated_at=bindparam("b_activated"),
        deactivated_at=bindparam("b_deactivated"),
    )
)




@dataclass(frozen=True, slots=True)
class Row:
    user_id: str
    display_name: str
    product: str
    activated_at: datetime
    deactivated_at: datetime | None


@dataclass
class ActivationImport:
    tenant: str
    file: str
    replace: bool
    rows: int = 0
    activated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    seats_taken: int = 0
    seats_freed: int = 0
    frees_held: int = 0
    hold_id: str | None = None
    hold_reason: str | None = None

    @property
    def touched(self) -> list[str]:
        return sorted(set(self.activated) | set(self.deactivated))

    def summary(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "file": self.file, "replace": self.replace, "rows": self.rows,
                "activated": len(self.activated), "deactivated": len(self.deactivated),
                "seats_taken": self.seats_taken, "seats_freed": self.seats_freed, "frees_held": self.frees_held,
                "hold_id": self.hold_id, "hold_reason": self.hold_reason}

    def line(self) -> str:
        text = (f"{self.tenant}: imported {self.rows} activation(s) from {self.file}"
                f"{' (replace)' if self.replace else ''} — {len(self.activated)} active, "
                f"{len(self.deactivated)} deactivated; seats +{self.seats_taken} −{self.seats_freed}")
        if self.hold_id:
            text += f"; {self.frees_held} FREES HELD for approval as {self.hold_id}: {self.hold_reason}"
        return text


def parse(data: bytes, now: datetime) -> list[Row]:
    """Validate the whole file; each problem names its line (the header is line 1)."""
    seen: set[str] = set()

    def one(_line: int, c: dict[str, str], why: list[str]) -> Row | None:
        require(c, ("user_id", "activated_at"), why)
        check_len(c, {"user_id": 128, "display_name": 512, "product": 32}, why)
        when: dict[str, datetime | None] = {}
        for name in ("activated_at", "deactivated_at"):
            raw = c.get(name, "").strip()
            if not raw:
                when[name] = None
                continue
            try:
                when[name] = parse_instant(raw)
            except ValueError:
                why.append(f"{name} {raw!r} is not an ISO-8601 date or instant")
                continue
            if when[name] > now:  # type: ignore[operator]
                why.append(f"{name} {raw} is in the future")
        start, end = when.get("activated_at"), when.get("deactivated_at")
        if start is not None and end is not None and end < start:
            why.append("deactivated_at is before activated_at")
        if c.get("user_id") in seen:
            why.append(f"user_id {c['user_id']!r} appears twice")
        if why or start is None:
            return None
        seen.add(c["user_id"])
        return Row(c["user_id"], c.get("display_name", ""), c.get("product", "").strip() or "flow365", start, end)

    return parse_all(data, HEADER, one)


def import_file(session: Session, tenant: str, path: Path, *, replace: bool, now: datetime) -> ActivationImport:
    """Write the file's activations (validated whole first); returns what it touched."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    rows = parse(data, now)
    if replace and not rows:
        raise InputError(f"{path} has no rows: with --replace it would deactivate every add-on account of "
                         f"tenant {tenant}; refused")
    result = ActivationImport(tenant, Path(path).name, replace, len(rows))
    conn = session.connection()
    records = [ActivationRecord(r.user_id, r.product, r.display_name or None, r.activated_at, r.deactivated_at)
               for r in rows]
    if replace:  # the file is the whole truth: active accounts absent from it are deactivated now
        listed = {r.user_id for r in rows}
        records += [ActivationRecord(a, p, n, at, now) for a, p, n, at in conn.execute(
            select(_A.c.identity_id, _A.c.product, _A.c.display_name, _A.c.activated_at).where(
                _A.c.tenant == tenant, _A.c.deactivated_at.is_(None))) if a not in listed]
    touched = apply_records(conn.execute, tenant, records, Applied())
    result.activated = sorted(r.identity_id for r in records if r.deactivated_at is None and r.identity_id in touched)
    result.deactivated = sorted(r.identity_id for r in records
                                if r.deactivated_at is not None and r.identity_id in touched)
    return result


def audit(session: Session, result: ActivationImport, now: datetime, actor: str) -> None:
    session.connection().execute(insert(AuditLog.__table__), [{  # type: ignore[attr-defined]
        "at": now, "tenant": result.tenant, "actor": actor, "action": "activations_imported",
        "subject": result.file, "detail": result.summary()}])


def apply_records(execute: Callable[..., Any], tenant: str, records: Iterable[ActivationRecord] | None,
                  out: Applied) -> set[str]:
    """Upsert add-on identities; returns those whose seat may move. Absence never deactivates: only an
    explicit ``deactivated_at`` does. The one writer of ``activation`` (the CSV and the LMS connector)."""
    stored = {
        r[0]: (r[1], r[2], r[3], r[4])
        for r in execute(
            select(_A.c.identity_id, _A.c.product, _A.c.display_name, _A.c.activated_at, _A.c.deactivated_at).where(
                _A.c.tenant == tenant
            )
        )
    }
    affected: set[str] = set()
    rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for a in {a.identity_id: a for a in records or ()}.values():
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
            affected.add(a.identity_id)
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
                affected.add(a.identity_id)
    if rows:
        execute(insert(_A), rows)
    if updates:
        execute(_UPDATE_ACTIVATION, updates)
    out.activations_changed = len(rows) + len(updates)
    return affected
