"""The authority's rules through its HTTP face (in process), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from licsync import db
from licsync.authority import lease as lease_mod
from licsync.authority import service, store
from licsync.authority.app import create_app
from licsync.subscriptions import keys
from licsync.subscriptions.terms import FrozenMap, Terms

PRIVATE, PUBLIC = keys.generate_keypair()
OTHER_PRIVATE, _ = keys.generate_keypair()
A = "2c6ffc20-1773-4b95-8ef4-1ae800a26dc5"
B = "0b1e6f1a-0000-4000-8000-000000000001"
T = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _key(sub: str = "SUB-1", private: bytes = PRIVATE, **extras: Any) -> str:
    return keys.issue(private, Terms(id=sub, customer="School", seats=10, starts_at=T, ends_at=T + timedelta(days=365),
                                     issued_at=T, extras=FrozenMap(extras)))


@pytest.fixture
def authority(db_url: str) -> Iterator[dict[str, Any]]:
    engine = db.get_engine(db_url)
    store.create_schema(engine)
    store.create_schema(engine)  # idempotent
    signer = service.signer_from_pem(PRIVATE)
    clock = {"now": T}
    with engine.begin() as c:
        service.bind_vendor_key(c, signer.public_key_b64)
        service.import_key(c, _key(), T)
        token = service.create_vendor_token(c, T, "tests")
    client = TestClient(create_app(engine, signer, lambda: clock["now"]))
    yield {"client": client, "engine": engine, "clock": clock, "token": token}
    client.close()


def _activate(c: TestClient, tenant: str, dep: str, key: str | None = None) -> Any:
    return c.post("/v1/activate", json={"key": key or _key(), "tenant_id": tenant, "deployment_id": dep})


def test_activate_renew_move_and_the_first_deployment_hears_moved(authority: dict[str, Any]) -> None:
    c, clock = authority["client"], authority["clock"]
    r = _activate(c, A, "dep-1")
    assert r.status_code == 200 and r.json()["outcome"] == "activated"
    first = lease_mod.verify(r.json()["lease"], PUBLIC)
    assert (first.tenant_id, first.deployment_id, first.expires_at) == (A, "dep-1", T + timedelta(days=7))
    clock["now"] = T + timedelta(days=4)
    r = c.post("/v1/renew", json={"lease": r.json()["lease"]})
    assert r.status_code == 200 and lease_mod.verify(r.json()["lease"], PUBLIC).issued_at == T + timedelta(days=4)
    # An expired lease of the active activation still renews: an authority outage must not end it.
    clock["now"] = T + timedelta(days=30)
    assert c.post("/v1/renew", json={"lease": lease_mod.sign(PRIVATE, first)}).status_code == 200
    assert _activate(c, B, "dep-2").json()["outcome"] == "moved"
    r = c.post("/v1/renew", json={"lease": lease_mod.sign(PRIVATE, first)})
    assert (r.status_code, r.json()["error"]) == (409, "moved")
    rows = c.get("/v1/activations", headers={"Authorization": f"Bearer {authority['token']}"}).json()
    assert [(x["tenant_id"], x["state"]) for x in rows] == [(A, "moved"), (B, "active")]
    with authority["engine"].connect() as conn:
        actions = [a for (a,) in conn.execute(select(store.audit.c.action).order_by(store.audit.c.seq))]
    assert actions[-4:] == ["activation_renewed", "activation_renewed", "activation_moved", "renew_refused"]


def test_refusals_have_stable_codes_and_change_nothing(authority: dict[str, Any]) -> None:
    c, token = authority["client"], authority["token"]
    assert (r := _activate(c, A, "dep-1", _key("SUB-9"))).status_code == 404
    assert r.json()["error"] == "unknown_subscription"
    assert _activate(c, A, "dep-1", _key(private=OTHER_PRIVATE)).json()["error"] == "bad_request"  # foreign vendor
    assert _activate(c, "not-a-guid", "dep-1").status_code == 400
    forged = lease_mod.sign(OTHER_PRIVATE, lease_mod.new_lease("SUB-1", A, "dep-1", T))
    assert c.post("/v1/renew", json={"lease": forged}).status_code == 400
    assert c.get("/v1/activations", headers={"Authorization": f"Bearer {authority['token']}"}).json() == []
    # Vendor endpoints: no token, a wrong token → 401.
    for headers in ({}, {"Authorization": "Bearer lsa_wrong"}):
        assert c.get("/v1/activations", headers=headers).status_code == 401
        assert c.post("/v1/subscriptions/SUB-1/revoke", headers=headers).status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    lease = _activate(c, A, "dep-1").json()["lease"]
    assert c.post("/v1/subscriptions/SUB-1/revoke", headers=auth).json()["state"] == "revoked"
    assert (r := c.post("/v1/renew", json={"lease": lease})).status_code == 410 and r.json()["error"] == "revoked"
    assert _activate(c, A, "dep-1").json()["error"] == "revoked"


def test_vendor_move_is_claimed_by_the_next_activation_from_that_tenant(authority: dict[str, Any]) -> None:
    c, auth = authority["client"], {"Authorization": f"Bearer {authority['token']}"}
    lease = _activate(c, A, "dep-1").json()["lease"]
    assert c.post("/v1/subscriptions/SUB-1/move", json={"tenant_id": B}, headers=auth).json()["outcome"] == "moved"
    assert c.post("/v1/renew", json={"lease": lease}).json()["error"] == "moved"
    assert _activate(c, B, "dep-2").json()["outcome"] == "claimed"
    rows = c.get("/v1/activations", headers=auth).json()
    assert [(x["tenant_id"], x["deployment_id"], x["state"]) for x in rows] == [(A, "dep-1", "moved"),
                                                                                (B, "dep-2", "active")]


def test_a_tenant_bound_key_activates_only_on_its_tenant(authority: dict[str, Any]) -> None:
    c = authority["client"]
    bound = _key("SUB-B", tenant_id=A)
    with authority["engine"].begin() as conn:
        assert service.import_key(conn, bound, T)["tenant_id"] == A
    assert _activate(c, B, "dep-1", bound).json()["error"] == "tenant_bound"
    assert _activate(c, A, "dep-1", bound).json()["outcome"] == "activated"


def test_the_database_itself_allows_one_active_activation_per_subscription(authority: dict[str, Any]) -> None:
    """Two activations racing past the checks cannot both commit: the partial unique index refuses."""
    _activate(authority["client"], A, "dep-1")
    with pytest.raises(IntegrityError), authority["engine"].begin() as conn:
        conn.execute(insert(store.activations).values(subscription_id="SUB-1", tenant_id=B, deployment_id="dep-2",
                                                      activated_at=T, state="active"))
