"""Database adapter: engine, sessions and migrations (SQLite embedded, PostgreSQL through psycopg)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from licsync.db import models, models_seat_models  # noqa: F401 - every table on the shared metadata
from licsync.errors import ConfigError, TransientError, truncate

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine per URL and process."""
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = _create(url)
    return engine


def dispose_all() -> None:
    """Close every pooled connection (end of a process, end of a test)."""
    while _ENGINES:
        _ENGINES.popitem()[1].dispose()


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"database.url: directory {parent} does not exist")
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    return engine


def dialect(engine: Engine) -> str:
    return engine.dialect.name


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose work commits as one transaction, or rolls back whole on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


BULK_ROWS = 10_000  # a transaction that writes this many rows refreshes the planner's statistics


def analyze(session: Session, *tables: str) -> None:
    """Refresh the query planner's statistics of freshly bulk-written tables, in the transaction.

    Both engines plan joins from statistics that do not yet describe rows written in the current
    transaction: PostgreSQL then guesses one row and nests loops (measured: a per-catalog count went
    from 22 ms to over 77 s at 2,000 users), SQLite drives the join from the wrong table. ANALYZE
    runs inside a transaction on both and costs well under a second at these sizes.
    """
    conn = session.connection()
    for table in tables:
        conn.exec_driver_sql(f'ANALYZE "{table}"')


def alembic_config(engine: Engine) -> Any:

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """PostgreSQL: a session advisory lock around the migration (SQLite has one writer anyway)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SELECT pg_advisory_lock(hashtext('licsync-migrate'))")
        try:
            yield
        finally:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(hashtext('licsync-migrate'))")


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Create or migrate the schema; idempotent. Returns (revision before, revision after)."""

    def current() -> str | None:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    try:
        with _migration_lock(engine):  # replicas started with --migrate take turns; the later ones find it done
            before = current()
            command.upgrade(alembic_config(engine), revision)
            return before, current()
    except OperationalError as exc:
        raise TransientError(f"database unavailable: {truncate(str(exc.orig))}") from None


def require_schema(engine: Engine) -> None:
    """Refuse to run on a database that was never upgraded, with the fix in the message."""

    try:
        with engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
            has_tables = inspect(conn).has_table("directory_user")
    except OperationalError as exc:
        raise TransientError(f"database unavailable: {truncate(str(exc.orig))}") from None
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    if rev is None or not has_tables:
        raise ConfigError("the database has no licsync schema yet: run `licsync db upgrade`")
    if rev != head:
        raise ConfigError(f"the database schema is at {rev}, this licsync needs {head}: run `licsync db upgrade`")
