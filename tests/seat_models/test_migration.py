"""Revision 0002 creates the seat-model tables and drops them again, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from licsync import db

TABLES = {"org", "org_catalog", "overage_tier_state", "subscription_upgrade", "learner_activity", "first_access",
          "duplicate_candidate", "seat_pool", "role_assignment", "pool_seat", "sign_in_activity"}


def tables(engine: Engine) -> set[str]:
    with engine.connect() as c:
        return set(inspect(c).get_table_names())


def test_0002_upgrades_downgrades_and_upgrades_again(engine: Engine) -> None:
    assert tables(engine) >= TABLES
    head = db.upgrade(engine)[1]
    assert db.upgrade(engine) == (head, head)  # idempotent
    command.downgrade(db.alembic_config(engine), "0001")
    assert not TABLES & tables(engine) and "seat" in tables(engine)
    command.upgrade(db.alembic_config(engine), "0002")
    assert tables(engine) >= TABLES
    assert db.upgrade(engine) == ("0002", head)
    db.require_schema(engine)


def test_the_models_match_the_migrations(engine: Engine) -> None:
    """Nothing left for autogenerate to find: the tables of models_seat_models are what 0002 creates."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from licsync.db.models import metadata

    with engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, metadata) if _ours(d)]
    assert diff == []


def _ours(change: object) -> bool:
    text = repr(change)
    return any(f"'{t}'" in text for t in TABLES)
