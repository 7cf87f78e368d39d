"""Users of the directory mirror as the faces name them: by id or by user principal name.

Core adapter (reads ``directory_user`` only). Wherever a user id is taken, a UPN is accepted too
(SPEC §5): :func:`resolve` turns what an admin or the platform typed into the id seats are kept by.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, select
from sqlmodel import Session

from licsync.db.models import DirectoryUser

_U = DirectoryUser.__table__  # type: ignore[attr-defined]


def resolve(session: Session, tenant: str, given: str) -> str:
    """The user id for ``given``: itself, or the id of the account whose UPN it is (case-insensitive).

    Object ids never contain ``@``, so only a UPN costs a lookup; an unknown UPN is returned as
    given (the answer is then about nobody, and says so)."""
    if "@" not in given:
        return given
    q = select(_U.c.id).where(_U.c.tenant == tenant, func.lower(_U.c.upn) == given.lower()).limit(1)
    found = session.connection().execute(q).scalar_one_or_none()
    return given if found is None else found


def changed_ids(session: Session, tenant: str, cycle_id: int) -> Iterator[str]:
    """The users whose mirror row a cycle changed (a delta round re-plans exactly these)."""
    q = select(_U.c.id).where(_U.c.tenant == tenant, _U.c.changed_cycle == cycle_id)
    for (h,) in session.connection().execute(q):
        yield h
