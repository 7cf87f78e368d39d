"""The authorization matrix, complete: every route of the app (API, CSV exports, pages, health,
metrics, OpenAPI, login/logout) × every role and scope × two tenants × two catalogs × every way of
presenting a credential (bearer header, dashboard cookie, none, bad, revoked, forged).

It extends ``tests/api/test_authz.py`` (which pins the main endpoints): here the expected code comes
from a policy written out from SPEC §5, the route list is checked against the app's own routes (a
new endpoint without a row fails), every answer must carry the security headers, and what a 200
CSV export or page contains is checked against the caller's scope.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from licsync import tokens
from licsync.api.app import SECURITY_HEADERS
from licsync.api.auth import COOKIE
from licsync.db import session_scope
from tests.api.conftest import Env, _env
from tests.api.seed import NOW

T = "/api/v1/tenants"
TENANTS = ("contoso", "fabrikam")
CATALOGS = {"contoso": ("cat-a", "cat-b"), "fabrikam": ("cat-f", "cat-zzz")}
NAMES = {"cat-a": "Sales Academy", "cat-b": "Safety Training", "cat-f": "Fabrikam Onboarding"}


@dataclass(frozen=True)
class Caller:
    name: str
    tenant: str | None = None  # None: not authenticated
    role: str | None = None
    catalogs: frozenset[str] = frozenset()
    how: str = "bearer"  # bearer | cookie | none | garbage | basic | revoked | forged


CALLERS = [
    Caller("admin", "contoso", "tenant-admin"),
    Caller("cat_a", "contoso", "catalog-admin", frozenset({"cat-a"})),
    Caller("cat_b", "contoso", "catalog-admin", frozenset({"cat-b"})),
    Caller("cat_ab", "contoso", "catalog-admin", frozenset({"cat-a", "cat-b"})),
    Caller("platform", "contoso", "platform"),
    Caller("other_admin", "fabrikam", "tenant-admin"),
    Caller("other_cat_f", "fabrikam", "catalog-admin", frozenset({"cat-f"})),
    Caller("other_platform", "fabrikam", "platform"),
    Caller("cookie_admin", "contoso", "tenant-admin", how="cookie"),
    Caller("cookie_cat_b", "contoso", "catalog-admin", frozenset({"cat-b"}), how="cookie"),
    Caller("cookie_platform", "contoso", "platform", how="cookie"),
    Caller("none", how="none"), Caller("garbage", how="garbage"), Caller("basic", how="basic"),
    Caller("revoked", how="revoked"), Caller("forged", how="forged"),
]
TOKEN_OF = {"cookie_admin": "admin", "cookie_cat_b": "cat_b", "cookie_platform": "platform"}


# Not in the matrix, with the reason: the login form takes a token in its body, and both forms need the
# browser's CSRF token first (tests/api/test_pages.py, tests/security/test_dashboard_login.py).
EXEMPT = {("POST", "/ui/login"), ("POST", "/ui/logout")}


def routes() -> list[tuple[str, str, str, str]]:
    """(method, route template, concrete path, tenant the path names or '') for every route."""
    out = [("GET", p, p, "") for p in ("/healthz", "/metrics", "/openapi.json", "/", "/ui/login", "/ui/logout",
                                        "/api/v1/me")] + [("GET", "/static", "/static/licsync.css", "")]
    for t in (*TENANTS, "nowhere"):
        out += [("GET", f"{T}/{{name}}/status", f"{T}/{t}/status", t),
                ("GET", f"{T}/{{name}}/access/{{user_id}}", f"{T}/{t}/access/u-ann", t),
                ("POST", f"{T}/{{name}}/statements", f"{T}/{t}/statements", t),
                ("GET", f"{T}/{{name}}/export/status.csv", f"{T}/{t}/export/status.csv", t),
                ("GET", f"{T}/{{name}}/export/holders.csv", f"{T}/{t}/export/holders.csv", t),
                ("GET", "/ui/tenants/{name}", f"/ui/tenants/{t}", t)]
        for c in CATALOGS.get(t, ("cat-a",)):
            out += [("GET", f"{T}/{{name}}/catalogs/{{catalog_id}}/status", f"{T}/{t}/catalogs/{c}/status", t),
                    ("GET", "/ui/tenants/{name}/catalogs/{catalog_id}", f"/ui/tenants/{t}/catalogs/{c}", t)]
    return out


def app_routes(routes_: list[object], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path template) of every route, included routers and mounts walked."""
    out: set[tuple[str, str]] = set()
    for r in routes_:
        if hasattr(r, "original_router"):  # FastAPI >= 0.16x keeps included routers as such
            out |= app_routes(r.original_router.routes, prefix + (r.include_context.prefix or ""))
        elif getattr(r, "methods", None):
            # path_format: a template with its convertors dropped ({name:licsync_tenant} → {name}), so
            # the access check's fast Starlette route is the same matrix row as the route it shadows
            out |= {(m, prefix + getattr(r, "path_format", r.path)) for m in r.methods - {"HEAD"}}  # type: ignore[attr-defined]
        elif hasattr(r, "routes"):  # a router or a mount (static files)
            sub = app_routes(r.routes, prefix + getattr(r, "path", ""))  # type: ignore[attr-defined]
            out |= sub or {("GET", prefix + getattr(r, "path", ""))}
    return out


def expected(c: Caller, path: str, tenant: str) -> int:
    """SPEC §5: no or bad credential 401; a valid one outside its scope 403; a missing catalog of one's
    own tenant 404 for a tenant admin (a catalog admin cannot learn whether it exists: 403)."""
    public = path in ("/healthz", "/metrics", "/openapi.json", "/ui/login", "/static/licsync.css")
    statements = path.endswith("/statements")
    if public:
        return 200
    if path == "/":
        return 303
    if path == "/ui/logout":
        return 405  # signing out is a POST with a CSRF token; a GET changes nothing
    if c.tenant is None:
        return 401
    if path == "/api/v1/me":
        return 200
    if tenant != c.tenant:
        return 403
    cat = m.group(1) if (m := re.search(r"/catalogs/([^/]+)", path)) else None
    page = path.startswith("/ui/")
    if statements:  # past authorization, the batch meets the seat model: both seeded tenants count by
        return 400 if c.role in ("platform", "tenant-admin") else 403  # enrollment, so it is refused (400)
    if c.role == "platform":
        return 200 if "/access/" in path and not page else 403
    if "/access/" in path or path.endswith(f"/{tenant}/status"):
        return 200 if c.role == "tenant-admin" else 403
    if cat is not None:
        if c.role == "catalog-admin" and cat not in c.catalogs:
            return 403
        return 404 if cat not in NAMES and (page or c.role == "tenant-admin") else 200
    return 200  # tenant page and CSV exports: tenant and catalog admins


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = next(gen := _env(tmp_path_factory.mktemp("authz")))
    with session_scope(e.engine) as s:
        for name, tenant, cats in (("cat_b", "contoso", ["cat-b"]), ("cat_ab", "contoso", ["cat-a", "cat-b"]),
                                   ("other_cat_f", "fabrikam", ["cat-f"])):
            e.seeded.tokens[name] = tokens.create_token(s, tenant, "catalog-admin", cats, NOW, label=name)
    yield e
    next(gen, None)


def request(env: Env, c: Caller, path: str, method: str = "GET") -> object:
    t = env.tokens
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if c.how == "bearer":
        headers["Authorization"] = f"Bearer {t[c.name]}"
    elif c.how == "cookie":
        cookies[COOKIE] = t[TOKEN_OF[c.name]]
    elif c.how == "garbage":
        headers["Authorization"] = "Bearer lsy_0123456789abcdef_" + "x" * 43
    elif c.how == "basic":
        headers["Authorization"] = f"Basic {t['admin']}"
    elif c.how == "revoked":
        headers["Authorization"] = f"Bearer {t['revoked']}"
    elif c.how == "forged":  # a real token id with another secret
        headers["Authorization"] = f"Bearer {t['admin'][:21]}{'A' * 43}"
    env.client.cookies.clear()
    for k, v in cookies.items():
        env.client.cookies.set(k, v)
    try:
        if method == "POST":  # an empty batch of statements: authorization is all that is asked
            return env.client.post(path, headers=headers, json=[], follow_redirects=False)
        return env.client.get(path, headers=headers, follow_redirects=False)
    finally:
        env.client.cookies.clear()


def test_every_route_of_the_app_is_in_the_matrix(env: Env) -> None:
    served = app_routes(env.client.app.routes)  # type: ignore[attr-defined]
    assert len(served) >= 15, served  # the walk found the routes (a vacuous set would prove nothing)
    covered = {(m, tpl) for m, tpl, _p, _t in routes()}
    assert served - EXEMPT == covered, f"missing from the matrix: {served - EXEMPT - covered}"


CASES = [(c, m, path, t) for c in CALLERS for m, _tpl, path, t in routes()]


@pytest.mark.parametrize(("caller", "method", "path", "tenant"), CASES,
                         ids=[f"{c.name}-{m}-{p}" for c, m, p, _n in CASES])
def test_matrix(env: Env, caller: Caller, method: str, path: str, tenant: str) -> None:
    r = request(env, caller, path, method)
    want = expected(caller, path, tenant)
    assert r.status_code == want, f"{caller.name} {path}: {r.status_code} {r.text[:200]}"  # type: ignore[attr-defined]
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, name  # type: ignore[attr-defined]
    body: str = r.text  # type: ignore[attr-defined]
    assert "Traceback" not in body
    if path.startswith("/ui/") or path == "/":
        assert "<script" not in body.lower()  # the dashboard runs no script at all (and the CSP allows none inline)
    if want == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")  # type: ignore[attr-defined]
    if want == 200:
        _in_scope(caller, path, body)


def _in_scope(c: Caller, path: str, body: str) -> None:
    """What a 200 shows: nothing of another tenant; a catalog admin sees only their catalogs."""
    others = [n for cat, n in NAMES.items() if (cat == "cat-f") == (c.tenant == "contoso")]
    hidden = others + ([NAMES[x] for x in CATALOGS.get(c.tenant or "", ()) if x in NAMES and x not in c.catalogs]
                       if c.role == "catalog-admin" else [])
    if path.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(body)))
        cats = {x for r in rows for x in (r.get("catalogs") or r.get("id") or "").split() if x}
        assert cats <= (set(CATALOGS[c.tenant or ""]) | {c.tenant}) if c.role == "tenant-admin" else cats <= c.catalogs
    if path.endswith(".csv") or path.startswith("/ui/tenants/"):
        for name in hidden:
            assert name not in body, f"{c.name} sees {name!r} on {path}"


def test_a_403_does_not_reveal_whether_a_tenant_or_catalog_exists(env: Env) -> None:
    admin, cat_a = CALLERS[0], CALLERS[1]
    for c, a, b in ((admin, f"{T}/fabrikam/status", f"{T}/nowhere/status"),
                    (cat_a, f"{T}/contoso/catalogs/cat-b/status", f"{T}/contoso/catalogs/cat-zzz/status"),
                    (admin, "/ui/tenants/fabrikam", "/ui/tenants/nowhere")):
        ra, rb = request(env, c, a), request(env, c, b)
        assert ra.status_code == rb.status_code == 403 and ra.text == rb.text  # type: ignore[attr-defined]
