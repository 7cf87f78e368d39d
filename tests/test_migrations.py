"""The schema comes only from Alembic: the migrations must build exactly what the models say."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from licsync import db
from licsync.db import models


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, models.metadata)
    assert diff == [], f"models and migrations differ; add a revision: {diff}"


def test_upgrade_is_idempotent(engine: Engine) -> None:
    head = db.upgrade(engine)[1]
    assert db.upgrade(engine) == (head, head)
    db.require_schema(engine)
