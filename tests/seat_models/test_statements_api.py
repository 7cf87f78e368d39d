"""xAPI-style statements over HTTP (first_access): the platform posts launches, seats are consumed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from licsync import tokens
from licsync.api import create_app
from licsync.db import session_scope
from tests.seat_models.conftest import NOW, TENANT, activate, make_settings, open_seats


def statement(aid: str, when: str = "2026-03-02T09:00:00Z", verb: str = "launched") -> dict[str, Any]:
    return {
        "actor": {"name": "Jo Doe", "account": {"homePage": "https://lms", "name": aid}},
        "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}"},
        "object": {"id": "urn:content:1", "definition": {"name": {"en-US": "Intro"}}},
        "timestamp": when,
    }


@pytest.fixture
def client(engine: Engine, vendor: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, dict]:
    monkeypatch.setenv("LICSYNC_X", "x")
    activate(engine, vendor, policy="first_access", seats=10, overage="bill", now=NOW)
    with session_scope(engine) as s:
        toks = {
            "platform": tokens.create_token(s, TENANT, "platform", [], NOW),
            "catalog": tokens.create_token(s, TENANT, "catalog-admin", ["k"], NOW),
            "other": tokens.create_token(s, "fabrikam", "platform", [], NOW),
        }
    app = create_app(make_settings(str(engine.url)), engine, clock=lambda: NOW)
    return TestClient(app), toks


def post(c: TestClient, token: str, body: Any) -> Any:
    return c.post(f"/api/v1/tenants/{TENANT}/statements", json=body, headers={"Authorization": f"Bearer {token}"})


def test_statements_consume_seats_once_and_bad_batches_store_nothing(
    client: tuple[TestClient, dict], engine: Engine
) -> None:
    c, t = client
    r = post(
        c, t["platform"], [statement("a1"), statement("a1", verb="experienced"), statement("a2", verb="completed")]
    )
    assert r.status_code == 200, r.text
    assert (r.json()["launches"], r.json()["ignored"]) == (2, 1)
    assert post(c, t["platform"], statement("a3")).status_code == 200  # a single statement is fine too
    assert set(open_seats(engine)) == {"a1", "a3"}
    bad = post(c, t["platform"], [statement("a4"), {"verb": "?"}])
    assert bad.status_code == 400 and "statement 1" in bad.json()["error"]
    assert set(open_seats(engine)) == {"a1", "a3"}  # nothing of the bad batch stored
    assert post(c, t["catalog"], [statement("a5")]).status_code == 403
    assert post(c, t["other"], [statement("a5")]).status_code == 401  # fabrikam is not configured here
    assert post(c, "lsy_bogus", [statement("a5")]).status_code == 401
    assert set(open_seats(engine)) == {"a1", "a3"}
