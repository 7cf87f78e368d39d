"""Bulk writes at driver speed, inside the caller's transaction.

SQLAlchemy's ``executemany`` processes every parameter of every row in Python (bind processors,
key lookups, expanding parameters): measured, that is half the cost of a first sync's writes. For
large batches these helpers convert each value once per distinct value, with the column types' own
dialect bind processors (so what is stored is byte for byte what SQLAlchemy would store: on SQLite a
datetime is ``2026-01-05 09:00:00.000000``, not what the driver's default adapter makes of it), and
hand plain tuples to the driver. On PostgreSQL, inserts go through ``COPY … FROM STDIN``, which also
saves the round trips.

* :func:`load` streams tuples into a table (a staging load of millions of rows never sits in memory);
* :func:`insert_rows` inserts row dicts already in memory (seats, audit rows, the directory mirror);
* :func:`executemany` runs an UPDATE/DELETE/INSERT over row dicts;
* :func:`bulk_mode` pauses the cyclic GC and widens SQLite's page cache for a large apply.

Small batches take the ordinary path: below :data:`FAST_MIN` rows the difference does not matter.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from operator import itemgetter
from typing import Any

from psycopg import sql
from sqlalchemy import JSON, Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine
from sqlmodel import Session

FAST_MIN = 500  # batches from this size skip SQLAlchemy's per-row processing
LOAD_CHUNK = 10_000  # rows per executemany / COPY write batch, so a stream is never held whole
MEMO_MAX = 50_000  # distinct values a converter remembers before it starts again
SQLITE_BULK_CACHE_KIB = 64 * 1024  # also what SQLite's sorter may hold in memory (CREATE INDEX, GROUP BY)


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
    for part in _chunks(rows):
        conn.exec_driver_sql(compiled.string, [to_tuple(r) for r in part])


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert these rows (dicts with the same keys). ``COPY`` on PostgreSQL, raw executemany on SQLite."""
    if not rows:
        return
    if len(rows) < FAST_MIN or conn.dialect.name not in ("postgresql", "sqlite"):
        conn.execute(insert(table), rows)
        return
    given = rows[0].keys()
    names = [c.name for c in table.columns if c.name in given]  # the table's order: what INSERT binds
    if len(names) != len(given):
        raise ValueError(f"{table.name}: no such column {sorted(set(given) - set(names))}")
    load(conn, table, map(_getter(names), rows), names)


def load(conn: Connection, table: Table, rows: Iterable[tuple[Any, ...]], columns: Sequence[str] | None = None) -> int:
    """Append ``rows`` (tuples in the order of ``columns``, default: every column) to ``table``.

    Memory stays flat whatever the number of rows: PostgreSQL takes them through ``COPY``, other
    databases in ``executemany`` chunks of :data:`LOAD_CHUNK`. Returns how many rows were written.
    """
    names = list(columns) if columns is not None else [c.name for c in table.columns]
    memos = [_processor(table.c[n].type, conn.dialect) for n in names]
    if conn.dialect.name == "postgresql":
        return _copy(conn, table, names, (_convert(chunk, memos) for chunk in _chunks(rows)))
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        compiled = insert(table).compile(dialect=conn.dialect, column_keys=names)
        order = [names.index(n) for n in compiled.positiontup or ()]
    n = 0
    for chunk in _chunks(rows):
        n += len(chunk)
        if not sqlite:
            conn.execute(insert(table), [dict(zip(names, r, strict=True)) for r in chunk])
        elif order == list(range(len(names))):
            conn.exec_driver_sql(compiled.string, _convert(chunk, memos))
        else:  # SQLAlchemy binds an INSERT's values in the order of the table's columns
            conn.exec_driver_sql(compiled.string, [tuple(r[i] for i in order) for r in _convert(chunk, memos)])
    return n


@contextmanager
def bulk_mode(session: Session, *, pause_gc: bool = True) -> Iterator[None]:
    """Pause the cyclic GC and, on SQLite, widen the page cache, for the duration of a large apply.

    Millions of small tuples would trigger full collections over and over; the page cache holds
    the indexes being filled (SQLite also sizes its sorter's memory by it, so it bounds memory).
    ``pause_gc=False`` for work that also makes HTTP requests, whose reference cycles must go.
    """
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar() if sqlite else None
    if sqlite:
        conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_BULK_CACHE_KIB}")
    was_enabled = gc.isenabled() and pause_gc
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        if sqlite and before is not None and not conn.closed:
            conn.exec_driver_sql(f"PRAGMA cache_size={int(before)}")


def _copy(conn: Connection, table: Table, names: list[str], chunks: Iterable[list[tuple[Any, ...]]]) -> int:
    """``COPY table (columns) FROM STDIN`` through psycopg, on the session's own connection and transaction."""

    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(n) for n in names)
    )
    n = 0
    raw: Any = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(stmt) as copy:
            for chunk in chunks:
                for row in chunk:
                    copy.write_row(row)
                n += len(chunk)
    except conn.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy would raise it (OperationalError, IntegrityError …): callers handle those.
        raise DBAPIError.instance(stmt.as_string(raw), None, exc, conn.dialect.loaded_dbapi.Error) from exc
    return n


def _chunks(rows: Iterable[Any]) -> Iterator[list[Any]]:
    it = iter(rows)
    while chunk := list(islice(it, LOAD_CHUNK)):
        yield chunk


def _convert(chunk: list[tuple[Any, ...]], memos: list[_Memo | None]) -> list[tuple[Any, ...]]:
    """The chunk with each value through its column's processor, a column at a time (C loops, no call per cell)."""
    if all(m is None for m in memos):
        return chunk
    cols = list(zip(*chunk, strict=True))
    return list(zip(*(c if m is None else map(m, c) for c, m in zip(cols, memos, strict=True)), strict=True))


class _Memo(dict[Any, Any]):
    """A bind processor's results by value; forgets everything past :data:`MEMO_MAX` values rather than grow.

    Unhashable values (JSON) are remembered by their repr, which tells 1 from 1.0 and key orders apart,
    so the stored text stays the processor's own.
    """

    def __init__(self, proc: Callable[[Any], Any]) -> None:
        super().__init__()
        self.proc = proc

    def __call__(self, value: Any) -> Any:
        try:
            return self[value]
        except TypeError:
            key = repr(value)
            return self[key] if key in self else self._remember(key, value)

    def __missing__(self, value: Any) -> Any:
        return self._remember(value, value)

    def _remember(self, key: Any, value: Any) -> Any:
        if len(self) >= MEMO_MAX:
            self.clear()
        out = self[key] = self.proc(value)
        return out


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> _Memo | None:
    """The column type's bind processor *for this dialect*, memoised. For ``COPY``, JSON is sent as the
    text SQLAlchemy would send (psycopg would otherwise want a ``Json`` wrapper; ``None`` is JSON null,
    as SQLAlchemy stores it)."""
    if dialect.name == "postgresql" and isinstance(type_, JSON):
        proc = getattr(dialect, "_json_serializer", None) or json.dumps
    else:
        proc = type_.dialect_impl(dialect).bind_processor(dialect)
    return _Memo(proc) if proc is not None else None


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row dict's values for ``names``, as a tuple (itemgetter returns a bare value for one name)."""
    return itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))  # type: ignore[return-value]


def _tupler(
    names: list[str], procs: list[Callable[[Any], Any] | None], fixed: dict[str, Any] | None = None
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row dict as the driver's tuple, each value through its column's processor; ``fixed``: constants."""
    get = _getter(names)
    converted = [(i, p) for i, p in enumerate(procs) if p is not None]

    def to_tuple(r: dict[str, Any]) -> tuple[Any, ...]:
        values = list(get({**r, **fixed} if fixed else r))
        for i, p in converted:
            values[i] = p(values[i])
        return tuple(values)

    return get if not (fixed or converted) else to_tuple
