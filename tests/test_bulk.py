"""The bulk writers store exactly what SQLAlchemy's own executemany stores, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from licsync.db import bulk, upgrade
from licsync.db.models import AuditLog, DirectoryChange, DirectoryUser

_U = DirectoryUser.__table__  # type: ignore[attr-defined]
_C = DirectoryChange.__table__  # type: ignore[attr-defined]
_AU = AuditLog.__table__  # type: ignore[attr-defined]

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)  # on the second: the format trap (".000000" or not)


def _users(tenant: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "tenant": tenant,
            "id": f"u{i:05d}",
            "upn": f"u{i}@contoso.example" if i % 7 else None,
            "mail": None,
            "display_name": f"Ünïcode {i} 'quoted' \"double\"\ttab\\back",
            "given_name": None,
            "surname": "O'Brien" if i % 2 else "",
            "employee_id": None,
            "user_type": "Member",
            "account_enabled": [True, False, None][i % 3],
            "deleted": "none",
            "deleted_since": None if i % 5 else T0 + timedelta(microseconds=i),
            "first_seen": T0,
            "last_changed": T0 + timedelta(seconds=i),
            "changed_cycle": 1,
            "seen_cycle": None if i % 4 == 0 else 1,
        }
        for i in range(n)
    ]


def _changes(tenant: str, n: int) -> list[dict[str, object]]:
    return [
        {
            "tenant": tenant,
            "cycle_id": 1,
            "user_id": f"u{i:05d}",
            "at": T0,
            "change": "updated",
            "fields": None if i % 2 else {"displayName": ["a", f"b{i}"], "n": [None, 1.5]},
        }
        for i in range(n)
    ]


def _stored(engine: Engine, table: object, tenant: str, order: str) -> list[tuple[object, ...]]:
    """The rows as the database holds them, every column cast to text (so formats are compared too)."""
    cols = [c.name for c in table.c if c.name not in ("seq", "id") or order == "id"]  # type: ignore[attr-defined]
    cast = "CAST({} AS TEXT)" if engine.dialect.name == "sqlite" else "{}::text"
    sel = ", ".join(cast.format(f'"{c}"') for c in cols)
    name = table.name  # type: ignore[attr-defined]
    with engine.connect() as c:
        q = text(f'SELECT {sel} FROM "{name}" WHERE tenant = :t ORDER BY {order}')  # noqa: S608 - our own names
        return [tuple(r) for r in c.execute(q, {"t": tenant})]


@pytest.mark.parametrize("n", [3, bulk.FAST_MIN + 7])
def test_insert_rows_stores_what_sqlalchemy_stores(engine: Engine, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    upgrade(engine)
    monkeypatch.setattr(bulk, "LOAD_CHUNK", 200)  # several COPY / executemany chunks
    with engine.begin() as c:
        c.execute(insert(_U), _users("plain", n))
        c.execute(insert(_C), _changes("plain", n))
        bulk.insert_rows(c, _U, _users("bulk", n))
        bulk.insert_rows(c, _C, _changes("bulk", n))
    for table, order in ((_U, "id"), (_C, "user_id, seq")):
        plain, fast = _stored(engine, table, "plain", order), _stored(engine, table, "bulk", order)
        assert len(fast) == n
        assert [r[1:] for r in fast] == [r[1:] for r in plain]  # all but the tenant column
    with engine.connect() as c:  # and it reads back through the models' types as the same values
        back = c.execute(select(_U.c.deleted_since, _U.c.account_enabled).where(_U.c.tenant == "bulk")).all()
    assert back[0] == (T0, True) and back[1] == (None, False) and back[2] == (None, None)


def test_executemany_takes_values_bound_in_the_statement(engine: Engine) -> None:
    upgrade(engine)
    n = bulk.FAST_MIN + 1
    with engine.begin() as c:
        bulk.insert_rows(c, _U, _users("t", n))
        stmt = (
            update(_U)
            .where(_U.c.tenant == "t", _U.c.id == bindparam("b_id"))
            .values(deleted="soft", deleted_since=T0, display_name=bindparam("b_name"))
        )
        bulk.executemany(c, stmt, [{"b_id": f"u{i:05d}", "b_name": f"n{i}"} for i in range(0, n, 2)])
    with engine.connect() as c:
        rows = c.execute(
            select(_U.c.id, _U.c.deleted, _U.c.deleted_since, _U.c.display_name)
            .where(_U.c.tenant == "t")
            .order_by(_U.c.id)
        ).all()
    assert rows[0] == ("u00000", "soft", T0, "n0")
    assert rows[1][1] == "none" and rows[1][3].startswith("Ünïcode 1")
    assert sum(1 for r in rows if r[1] == "soft") == (n + 1) // 2


def test_a_failed_bulk_insert_leaves_nothing(engine: Engine) -> None:
    upgrade(engine)
    rows = _users("t", bulk.FAST_MIN + 1)
    rows[-1]["id"] = rows[0]["id"]  # a duplicate key at the very end
    with pytest.raises(IntegrityError), engine.begin() as c:  # wrapped as SQLAlchemy wraps it, on both
        bulk.insert_rows(c, _U, rows)
    with engine.connect() as c:
        assert c.execute(select(_U.c.id).where(_U.c.tenant == "t")).first() is None
