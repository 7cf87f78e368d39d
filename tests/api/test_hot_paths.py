"""The API's hot paths on both databases: the access check (one statement; inline on SQLite, in the
thread pool on PostgreSQL) and the read-only endpoints' engine (autocommit on PostgreSQL)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from licsync import db
from licsync.api.auth import FailureLimiter
from tests.api.conftest import bearer
from tests.api.seed import NOW, Seeded, seed, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

T = "/api/v1/tenants"


@pytest.fixture
def app_env(db_url: str) -> Iterator[tuple[Engine, Seeded, TestClient]]:
    from licsync.api import create_app

    engine = db.get_engine(db_url)
    db.upgrade(engine)
    seeded = seed(engine)
    client = TestClient(create_app(settings(), engine, clock=lambda: NOW, limiter=FailureLimiter(limit=100_000)),
                        raise_server_exceptions=False)
    try:
        yield engine, seeded, client
    finally:
        client.close()


def test_access_check_is_one_statement_and_answers_as_before(app_env: tuple[Engine, Seeded, TestClient]) -> None:
    engine, seeded, client = app_env
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    postgres = engine.dialect.name == "postgresql"
    assert ctx.inline_reads is not postgres
    isolation = ctx.reads.get_execution_options().get("isolation_level")
    assert isolation == ("AUTOCOMMIT" if postgres else None)
    h = bearer(seeded.tokens["platform"])
    client.get(f"{T}/contoso/access/u-ann", headers=h)  # the token is verified (and kept) here
    statements: list[str] = []

    def seen(_c: object, _k: object, sql: str, *_a: object) -> None:
        statements.append(sql)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        answers = {u: client.get(f"{T}/contoso/access/{u}", headers=h).json() for u in ("u-ann", "u-gone", "nobody")}
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    checks = [q for q in statements if "api_token" not in q]  # not the throttled last_used_at write
    assert len(checks) == 3, checks  # one per check: the seat and the subscription together
    assert answers["u-ann"] == {"licensed": True, "reason": "seat_held", "user_id": "u-ann", "holds_seat": True,
                                "since": "2026-10-23T10:00:00Z", "sentence": answers["u-ann"]["sentence"]}
    assert (answers["u-gone"]["licensed"], answers["u-gone"]["reason"], answers["u-gone"]["since"]) == (
        False, "no_seat", None)
    assert (answers["nobody"]["licensed"], answers["nobody"]["holds_seat"]) == (False, False)


def test_access_without_an_active_subscription(app_env: tuple[Engine, Seeded, TestClient]) -> None:
    """No subscription row: the combined statement still returns its one row (subscription columns
    null), and the decision says why."""
    from sqlalchemy import update

    from licsync.db import session_scope
    from licsync.db.models import Subscription

    engine, seeded, client = app_env
    with session_scope(engine) as s:
        s.execute(update(Subscription).where(Subscription.tenant == "contoso").values(state="deactivated"))
    body = client.get(f"{T}/contoso/access/u-ann", headers=bearer(seeded.tokens["platform"])).json()
    assert body["licensed"] is False and body["holds_seat"] is True


def test_status_reads_agree_on_both_databases(app_env: tuple[Engine, Seeded, TestClient]) -> None:
    _engine, seeded, client = app_env
    body = client.get(f"{T}/contoso/status", headers=bearer(seeded.tokens["admin"])).json()
    assert (body["purchased"], body["consumed"], body["available"]) == (10, 4, 6)
    assert body["catalogs"] == [{"id": "cat-a", "name": "Sales Academy", "consumed": 3},
                                {"id": "cat-b", "name": "Safety Training", "consumed": 2}]
    one = client.get(f"{T}/contoso/catalogs/cat-b/status", headers=bearer(seeded.tokens["admin"])).json()
    assert (one["consumed"], one["pool"]) == (2, {"purchased": 10, "consumed": 4, "available": 6})


def test_access_check_leaves_the_loop_when_the_pool_is_busy(
    app_env: tuple[Engine, Seeded, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inline only while a connection is free: with every pooled connection checked out the check
    goes to the thread pool, so the event loop never waits in the pool's queue."""
    from licsync.api import routes

    engine, seeded, client = app_env
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL always reads in the thread pool")
    pooled: list[str] = []
    real = routes.run_in_threadpool

    async def spy(fn: object, *args: object) -> object:
        pooled.append(str(args[2]))
        return await real(fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(routes, "run_in_threadpool", spy)
    h = bearer(seeded.tokens["platform"])
    assert client.get(f"{T}/contoso/access/u-ann", headers=h).json()["licensed"] is True
    assert pooled == []  # a free connection: inline
    held = [engine.connect() for _ in range(engine.pool.size())]  # type: ignore[attr-defined]
    try:
        assert not routes._pool_has_room(engine)
        assert client.get(f"{T}/contoso/access/u-bob", headers=h).json()["licensed"] is True
    finally:
        for c in held:
            c.close()
    assert pooled == ["u-bob"]
