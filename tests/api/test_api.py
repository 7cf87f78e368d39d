"""The API's answers: contract shapes, exports, errors, headers, metrics, health, revocation, limits."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import create_engine

from licsync import tokens
from licsync.api.auth import TOKEN_CACHE_TTL, FailureLimiter
from licsync.config import Settings
from licsync.db import session_scope
from licsync.db.models import OutboxMessage, SyncCycle, SyncState
from tests.api.conftest import Env, TestClient, bearer
from tests.api.seed import EVIL_NAME, NOW, settings_data
from tests.metrics_text import parse_metrics

T = "/api/v1/tenants"


def test_status_json_is_the_contract(shared: Env) -> None:
    body = shared.client.get(f"{T}/contoso/status", headers=bearer(shared.tokens["admin"])).json()
    assert set(body) >= {"tenant", "subscription", "purchased", "consumed", "available", "overage", "grace",
                         "catalogs"}
    assert (body["tenant"], body["purchased"], body["consumed"], body["available"], body["overage"]) == (
        "contoso", 10, 4, 6, 0)
    assert set(body["subscription"]) >= {"id", "seats", "starts_at", "ends_at", "state"}
    assert body["subscription"]["state"] == "active"
    assert set(body["grace"]) >= {"state", "reason", "started_at", "ends_at"}
    assert body["catalogs"] == [{"id": "cat-a", "name": "Sales Academy", "consumed": 3},
                                {"id": "cat-b", "name": "Safety Training", "consumed": 2}]


def test_catalog_status_has_the_catalog_keys(shared: Env) -> None:
    body = shared.client.get(f"{T}/contoso/catalogs/cat-a/status", headers=bearer(shared.tokens["cat_a"])).json()
    assert {k: body[k] for k in ("id", "name", "consumed")} == {"id": "cat-a", "name": "Sales Academy", "consumed": 3}
    assert body["pool"] == {"purchased": 10, "consumed": 4, "available": 6}
    assert "catalogs" not in body


def test_access_decisions(shared: Env) -> None:
    h = bearer(shared.tokens["platform"])
    ann = shared.client.get(f"{T}/contoso/access/u-ann", headers=h).json()
    assert (ann["licensed"], ann["reason"], ann["holds_seat"]) == (True, "seat_held", True)
    gone = shared.client.get(f"{T}/contoso/access/u-gone", headers=h).json()
    assert (gone["licensed"], gone["reason"]) == (False, "no_seat")
    nobody = shared.client.get(f"{T}/contoso/access/not-a-user", headers=h).json()
    assert (nobody["licensed"], nobody["reason"]) == (False, "no_seat")


def test_access_agrees_with_explain(shared: Env) -> None:
    from sqlmodel import Session

    from licsync.service import explain_user

    h = bearer(shared.tokens["admin"])
    with Session(shared.engine) as s:
        for user in ("u-ann", "u-cy", "u-gone", "nobody"):
            api = shared.client.get(f"{T}/contoso/access/{user}", headers=h).json()
            exp = explain_user(s, "contoso", user, NOW)
            assert (api["licensed"], api["reason"], api["since"]) == (exp["licensed"], exp["reason"], exp["since"])


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_holders_csv_neutralises_formulas_and_scopes_catalog_admins(shared: Env) -> None:
    admin = _csv(shared.client.get(f"{T}/contoso/export/holders.csv", headers=bearer(shared.tokens["admin"])).text)
    assert [r["user_id"] for r in admin] == ["u-ann", "u-bob", "u-cy", "u-evil"]
    evil = next(r for r in admin if r["user_id"] == "u-evil")
    assert evil["display_name"] == "'" + EVIL_NAME
    assert next(r for r in admin if r["user_id"] == "u-cy")["catalogs"] == "cat-a cat-b"
    assert all(r["seat_reason"] == "enrolled" and r["reason_sentence"] for r in admin)

    mine = _csv(shared.client.get(f"{T}/contoso/export/holders.csv", headers=bearer(shared.tokens["cat_a"])).text)
    assert [r["user_id"] for r in mine] == ["u-ann", "u-cy", "u-evil"]  # not Bob (cat-b only)
    assert next(r for r in mine if r["user_id"] == "u-cy")["catalogs"] == "cat-a"  # cat-b stays invisible


def test_status_csv(shared: Env) -> None:
    r = shared.client.get(f"{T}/contoso/export/status.csv", headers=bearer(shared.tokens["admin"]))
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = _csv(r.text)
    assert [(x["kind"], x["id"], x["consumed"]) for x in rows] == [
        ("tenant", "contoso", "4"), ("catalog", "cat-a", "3"), ("catalog", "cat-b", "2")]
    mine = _csv(shared.client.get(f"{T}/contoso/export/status.csv", headers=bearer(shared.tokens["cat_a"])).text)
    assert [(x["kind"], x["id"]) for x in mine] == [("catalog", "cat-a")]


def test_neutralise() -> None:
    from licsync.csvfiles import safe_cell as neutralise

    for bad in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(bad) == "'" + bad
    assert neutralise("Ann") == "Ann"
    assert neutralise(-5) == -5  # numbers stay numbers


def test_security_headers_everywhere(shared: Env) -> None:
    h = bearer(shared.tokens["admin"])
    for path, headers in [(f"{T}/contoso/status", h), (f"{T}/contoso/status", {}), ("/nope", {}), ("/healthz", {}),
                          ("/metrics", {}), ("/ui/tenants/contoso", h), ("/ui/login", {}), ("/openapi.json", {}),
                          ("/static/licsync.css", {})]:
        r = shared.client.get(path, headers=headers)
        assert r.headers["content-security-policy"].startswith("default-src 'self'"), path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == ("public, max-age=3600" if path.startswith("/static") else "no-store")


def test_errors_are_json_without_tracebacks(fresh: Env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from licsync import status

    assert fresh.client.get("/nope").json() == {"error": "not found"}
    r = fresh.client.post(f"{T}/contoso/status", headers=bearer(fresh.tokens["admin"]))
    assert r.status_code == 405 and r.json() == {"error": "method not allowed"}

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(status, "tenant_status", boom)
    r = fresh.client.get(f"{T}/contoso/status", headers=bearer(fresh.tokens["admin"]))
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    assert "passwd" not in r.text


def test_openapi_lists_the_contract(shared: Env) -> None:
    doc = shared.client.get("/openapi.json").json()
    for p in ("/api/v1/tenants/{name}/status", "/api/v1/tenants/{name}/catalogs/{catalog_id}/status",
              "/api/v1/tenants/{name}/access/{user_id}", "/healthz", "/metrics"):
        assert p in doc["paths"], p
    assert any(s.get("scheme") == "bearer" for s in doc["components"]["securitySchemes"].values())
    for path, ops in doc["paths"].items():  # every API operation names the bearer scheme
        for op in ops.values():
            assert (op.get("security") == [{"HTTPBearer": []}]) == path.startswith("/api/v1/"), path
    assert not any(p.startswith("/ui") for p in doc["paths"])


def _frozen_auth(client: TestClient) -> list[float]:
    """Give the app's authenticator a clock the test moves; returns the clock's cell."""
    t = [1000.0]
    client.app.state.ctx.auth.clock = lambda: t[0]  # type: ignore[attr-defined]
    return t


def test_revoked_token_is_refused_within_the_cache_ttl(fresh: Env) -> None:
    t = _frozen_auth(fresh.client)
    h = bearer(fresh.tokens["platform"])
    for path in (f"{T}/contoso/access/u-ann", f"{T}/contoso/status"):
        assert fresh.client.get(path, headers=h).status_code in (200, 403)
    with session_scope(fresh.engine) as s:
        assert tokens.revoke(s, tokens.token_id_of(fresh.tokens["platform"]) or "", NOW)
    t[0] += TOKEN_CACHE_TTL - 0.01  # still trusted from the last read of its row …
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=h).status_code == 200
    t[0] += 0.02  # … and refused once that read is older than the TTL, on every endpoint
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=h).status_code == 401
    assert fresh.client.get("/api/v1/me", headers=h).status_code == 401
    t[0] += 60  # a refusal is never cached the other way round either: still 401, from the database
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=h).status_code == 401


def test_token_cache_ttl_is_two_seconds_and_zero_disables_it(fresh: Env) -> None:
    assert TOKEN_CACHE_TTL == 2.0  # README.md and SECURITY.md state this figure
    fresh.client.app.state.ctx.auth.token_ttl = 0  # type: ignore[attr-defined]
    h = bearer(fresh.tokens["platform"])
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=h).status_code == 200
    with session_scope(fresh.engine) as s:
        assert tokens.revoke(s, tokens.token_id_of(fresh.tokens["platform"]) or "", NOW)
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=h).status_code == 401


def test_token_cache_keeps_only_digests_and_only_successes(fresh: Env) -> None:
    _frozen_auth(fresh.client)
    auth = fresh.client.app.state.ctx.auth  # type: ignore[attr-defined]
    good, bad = fresh.tokens["platform"], fresh.tokens["platform"][:-4] + "AAAA"
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=bearer(good)).status_code == 200
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=bearer(bad)).status_code == 401
    assert fresh.client.get(f"{T}/contoso/access/u-ann", headers=bearer(fresh.tokens["revoked"])).status_code == 401
    assert list(auth._verified) == [tokens.hash_token(good)]
    assert all(good not in repr(v) for v in auth._verified.values())


def test_access_fast_route_answers_like_the_documented_one(fresh: Env) -> None:
    """The Starlette route that serves the check, inline (SQLite) or in the thread pool, and the
    FastAPI route it shadows give the same answers, errors included."""
    from licsync.api import routes

    app = fresh.client.app
    assert app.router.routes[0] is routes.ACCESS_ROUTE  # type: ignore[attr-defined]
    assert app.state.ctx.inline_reads  # type: ignore[attr-defined]
    h = bearer(fresh.tokens["platform"])
    forged = bearer("lsy_0123456789abcdef_" + "x" * 43)
    cases = [(f"{T}/contoso/access/u-ann", h), (f"{T}/contoso/access/nobody", h), (f"{T}/fabrikam/access/u-fay", h),
             (f"{T}/contoso/access/u-ann", {}), (f"{T}/contoso/access/u-ann", forged),
             (f"{T}/contoso/access/u-ann", bearer(fresh.tokens["cat_a"])), (f"{T}/-bad/access/u-ann", h),
             (f"{T}/contoso/access/u%2Fslash", h)]

    def answers() -> list[tuple[int, str, str | None]]:
        out = []
        for path, headers in cases:
            r = fresh.client.get(path, headers=headers)
            out.append((r.status_code, r.text, r.headers.get("www-authenticate")))
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
        return out

    inline = answers()
    app.state.ctx.inline_reads = False  # type: ignore[attr-defined]
    pooled = answers()
    app.router.routes.remove(routes.ACCESS_ROUTE)  # type: ignore[attr-defined]
    try:
        documented = answers()
    finally:
        app.router.routes.insert(0, routes.ACCESS_ROUTE)  # type: ignore[attr-defined]
    assert inline == pooled == documented
    assert [c for c, _t, _w in inline] == [200, 200, 403, 401, 401, 403, 422, 404]
    assert fresh.client.post(f"{T}/contoso/access/u-ann", headers=h).status_code == 405


def test_tokens_are_stored_hashed_only(fresh: Env) -> None:
    from sqlalchemy import text

    with fresh.engine.connect() as c:
        dump = " ".join(str(v) for row in c.execute(text("SELECT * FROM api_token")) for v in row)
    for raw in fresh.tokens.values():
        assert raw not in dump and raw[21:] not in dump  # lsy_ + 16-hex id + _ , then the secret


def test_rate_limit_on_failures(fresh: Env) -> None:
    now = [1000.0]
    c = fresh.make_client(limiter=FailureLimiter(limit=20, window=60, clock=lambda: now[0]))
    bad = bearer("lsy_0123456789abcdef_" + "x" * 43)
    for _ in range(20):
        assert c.get(f"{T}/contoso/status", headers=bad).status_code == 401
    r = c.get(f"{T}/contoso/status", headers=bad)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 60
    good = bearer(fresh.tokens["admin"])
    assert c.get(f"{T}/contoso/status", headers=good).status_code == 200  # a valid token is never refused
    assert c.get("/healthz").status_code == 200  # unauthenticated endpoints are not limited
    now[0] += 30
    assert int(c.get(f"{T}/contoso/status", headers=bad).headers["Retry-After"]) == 30
    now[0] += 31
    assert c.get(f"{T}/contoso/status", headers=bad).status_code == 401


def test_limiter_is_per_address() -> None:
    lim = FailureLimiter(limit=2, window=10, clock=lambda: 0.0)
    lim.failed("10.0.0.1")
    lim.failed("10.0.0.1")
    assert lim.retry_after("10.0.0.1") == 10
    assert lim.retry_after("10.0.0.2") is None


def test_missing_token_does_not_count_as_a_failure(fresh: Env) -> None:
    c = fresh.make_client(limiter=FailureLimiter(limit=2, window=60))
    for _ in range(5):
        assert c.get(f"{T}/contoso/status").status_code == 401
    assert c.get(f"{T}/contoso/status", headers=bearer(fresh.tokens["admin"])).status_code == 200


def test_metrics(fresh: Env) -> None:
    with session_scope(fresh.engine) as s:
        for i, (st, dur, req, ret) in enumerate([("ok", 2.5, 10, 1), ("ok", 40.0, 30, 0), ("failed", None, 0, 0)]):
            summary = None if dur is None else {"duration_s": dur, "graph_requests": req, "retries": ret}
            s.add(SyncCycle(tenant="contoso", kind="delta", status=st, started_at=NOW - timedelta(hours=i),
                            summary=summary))
        s.add(SyncState(tenant="contoso", consecutive_failures=7, last_success_at=NOW))
        for i, st in enumerate(("pending", "pending", "failed")):
            s.add(OutboxMessage(idempotency_key=f"k{i}", event="e", recipient="a@b", subject="s", body_text="b",
                                status=st, created_at=NOW))
    named = Settings.model_validate(settings_data() | {"api": {"metrics_tenant_labels": "name"}})
    r = fresh.make_client(settings=named).get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = parse_metrics(r.text)
    assert m['licsync_sync_cycles_total{tenant="contoso",kind="delta",status="ok"}'] == 2
    assert m['licsync_sync_cycles_total{tenant="contoso",kind="delta",status="failed"}'] == 1
    assert m['licsync_sync_cycle_duration_seconds_bucket{tenant="contoso",le="5.0"}'] == 1
    assert m['licsync_sync_cycle_duration_seconds_bucket{tenant="contoso",le="60.0"}'] == 2
    assert m['licsync_sync_cycle_duration_seconds_bucket{tenant="contoso",le="+Inf"}'] == 2
    assert m['licsync_sync_cycle_duration_seconds_sum{tenant="contoso"}'] == 42.5
    assert m['licsync_graph_requests_total{tenant="contoso"}'] == 40
    assert m['licsync_graph_retries_total{tenant="contoso"}'] == 1
    assert m['licsync_seats_consumed{tenant="contoso"}'] == 4
    assert m['licsync_seats_available{tenant="contoso"}'] == 6
    assert m['licsync_seats_consumed{tenant="fabrikam"}'] == 1
    assert m['licsync_grace_state{tenant="contoso",state="none"}'] == 1
    assert m['licsync_sync_quarantined{tenant="contoso"}'] == 1
    assert m['licsync_outbox_messages{status="pending"}'] == 2
    assert m['licsync_outbox_messages{status="failed"}'] == 1


def test_healthz(fresh: Env) -> None:
    assert fresh.client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    stale = fresh.make_client(liveness=lambda: (False, {"heartbeat_age_s": 99}))
    r = stale.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert fresh.make_client(liveness=lambda: (True, {})).get("/healthz").status_code == 200


def test_healthz_without_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import warnings

    from licsync.api import create_app
    from tests.api.seed import settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    engine = create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    with TestClient(create_app(settings(), engine), raise_server_exceptions=False) as c:
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json()["database"].startswith("unavailable")
        assert c.get(f"{T}/contoso/status", headers=bearer("lsy_0123456789abcdef_" + "x" * 43)).status_code == 503
    engine.dispose()


def test_status_lists_every_catalog_with_its_kept_count(fresh: Env) -> None:
    """Catalogs without a count row (no holder yet) show 0; the list is ordered by id; one query
    for the whole list, however many catalogs (a tenant with 1,000 used to cost two 1,000-row
    queries and 1,000 ORM objects)."""
    from sqlalchemy import event, insert

    from licsync import status
    from licsync.db.models import Catalog

    with session_scope(fresh.engine) as s:
        s.connection().execute(insert(Catalog.__table__), [  # type: ignore[attr-defined]
            {"tenant": "contoso", "id": f"cat-z{i:03d}", "name": f"Z {i}", "source": "csv"} for i in range(300)])
    from sqlmodel import Session

    statements: list[str] = []

    def count(_c: object, _k: object, sql: str, *_a: object) -> None:
        statements.append(sql)

    event.listen(fresh.engine, "before_cursor_execute", count)
    try:
        with Session(fresh.engine) as s:
            rows = status.catalog_rows(s, "contoso")
            one = status.catalog_rows(s, "contoso", "cat-b")
    finally:
        event.remove(fresh.engine, "before_cursor_execute", count)
    assert [r["id"] for r in rows] == ["cat-a", "cat-b"] + [f"cat-z{i:03d}" for i in range(300)]
    assert rows[:2] == [{"id": "cat-a", "name": "Sales Academy", "consumed": 3},
                        {"id": "cat-b", "name": "Safety Training", "consumed": 2}]
    assert {r["consumed"] for r in rows[2:]} == {0}
    assert one == [{"id": "cat-b", "name": "Safety Training", "consumed": 2}]
    assert len(statements) == 2  # one query per call
    body = fresh.client.get(f"{T}/contoso/status", headers=bearer(fresh.tokens["admin"])).json()
    assert body["catalogs"] == rows
    other = fresh.client.get(f"{T}/fabrikam/status", headers=bearer(fresh.tokens["other_admin"])).json()
    assert other["catalogs"] == [{"id": "cat-f", "name": "Fabrikam Onboarding", "consumed": 1}]
