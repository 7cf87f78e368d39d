"""Bulk writes at driver speed, inside the caller's transaction.

SQLAlchemy's ``executemany`` processes every parameter of every row in Python (bind processors,
key lookups, expanding parameters): measured, that is half the cost of a first sync's writes. For
large batches these helpers convert each value once per distinct value, with the column types' own
dialect bind processors (so what is stored is byte for byte what SQLAlchemy would store), and hand
plain tuples to the driver. On PostgreSQL, inserts go through ``COPY … FROM STDIN``, which also saves
the round trips.

Small batches take the ordinary path: below :data:`FAST_MIN` rows the difference does not matter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

FAST_MIN = 500  # batches from this size skip SQLAlchemy's per-row processing
COPY_ROWS = 20_000  # rows per COPY / executemany call, so a batch is never held twice over


def executemany(conn: Connection, stmt: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``conn.execute(stmt, rows)``, minus SQLAlchemy's per-row overhead for large batches on SQLite."""
    if not rows:
        return
    if len(rows) < FAST_MIN or conn.dialect.name != "sqlite":
        conn.execute(stmt, rows)
        return
    keys = list(rows[0])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=keys)
    names = list(compiled.positiontup or ())
    procs = [_processor(compiled.binds[n].type, conn.dialect) for n in names]
    # Values bound in the statement itself (``tenant == "x"``, ``.values(at=now)``) are the same in every row.
    fixed = {n: compiled.binds[n].effective_value for n in names if n not in keys}
    to_tuple = _tupler(names, procs, fixed)
    for part in _parts(rows):
        conn.exec_driver_sql(compiled.string, [to_tuple(r) for r in part])


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert these rows (dicts with the same keys). ``COPY`` on PostgreSQL, raw executemany on SQLite."""
    if not rows:
        return
    if len(rows) < FAST_MIN or conn.dialect.name not in ("postgresql", "sqlite"):
        conn.execute(insert(table), rows)
        return
    if conn.dialect.name == "sqlite":
        executemany(conn, insert(table), rows)
        return
    names = list(rows[0])
    to_tuple = _tupler(names, [_copy_processor(table.c[n].type, conn.dialect) for n in names])
    columns = ", ".join(f'"{n}"' for n in names)
    sql = f'COPY "{table.name}" ({columns}) FROM STDIN'
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for part in _parts(rows):
            with cursor.copy(sql) as copy:
                for r in part:
                    copy.write_row(to_tuple(r))
    except conn.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy would raise it (OperationalError, IntegrityError …): callers handle those.
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


def _tupler(
    names: list[str], procs: list[Callable[[Any], Any] | None], fixed: dict[str, Any] | None = None
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row dict as the driver's tuple, each value through its column's processor; ``fixed``: constants."""
    get: Callable[[dict[str, Any]], Any] = itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))
    converted = [(i, p) for i, p in enumerate(procs) if p is not None]

    def to_tuple(r: dict[str, Any]) -> tuple[Any, ...]:
        values = list(get({**r, **fixed} if fixed else r))
        for i, p in converted:
            values[i] = p(values[i])
        return tuple(values)

    return get if not (fixed or converted) else to_tuple


def _parts(rows: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), COPY_ROWS):
        yield rows[start : start + COPY_ROWS]


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column type's bind processor *for this dialect* (e.g. SQLite's datetime format), memoised."""
    return _memo(type_.dialect_impl(dialect).bind_processor(dialect))


def _copy_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What COPY's text format needs: JSON as the text SQLAlchemy would send (``None`` is JSON null)."""
    if isinstance(type_, JSON):
        return _memo(getattr(dialect, "_json_serializer", None) or json.dumps)
    return _processor(type_, dialect)


def _memo(proc: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    if proc is None:
        return None
    memo: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            out = memo[value] = proc(value)
            return out
        except TypeError:  # unhashable (JSON): keyed by its repr, which tells 1 from 1.0 and key orders apart
            key = repr(value)
            try:
                return memo[key]
            except KeyError:
                out = memo[key] = proc(value)
                return out

    return convert
