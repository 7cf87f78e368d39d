"""The dashboard: server-rendered pages for tenant and catalog admins (no JavaScript).

Authentication is the API's: a bearer header, or the token given once on the login form (or as
``?token=``), kept in an HttpOnly, SameSite=Strict cookie so scripts cannot read it and other sites
cannot send it. Every page is a GET that changes nothing, so SameSite=Strict is the CSRF defence.
A catalog admin sees the tenant's seat pool (to know whether seats are left) and only their own
catalogs: other catalogs' names, counts and holders never reach their page or export.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from licsync import status
from licsync.api import charts, queries
from licsync.api.app import WEB
from licsync.api.auth import COOKIE, ApiError, client_ip, forbidden
from licsync.api.routes import TenantName, authorized, ctx_of, pool
from licsync.status import forecast_for
from licsync.tokens import Principal

router = APIRouter(include_in_schema=False)
env = Environment(loader=FileSystemLoader(WEB / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
COOKIE_MAX_AGE = 8 * 3600


def page(template: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    return HTMLResponse(env.get_template(template).render(**context), status_code=status_code, headers=headers)


def render_error(request: Request, status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if status_code == 401:
        return page("login.html", 401, headers, error=message)
    return page("error.html", status_code, headers, status=status_code, message=message)


def home_of(p: Principal) -> str:
    return f"/ui/tenants/{p.tenant}"


def _login(request: Request, raw: str) -> Response:
    """Check a token given on the form; on success keep it in the cookie and go home."""
    ctx = ctx_of(request)
    ctx.auth.check_blocked(request)
    with Session(ctx.engine) as session:
        p = ctx.auth.verify(session, raw.strip()) if raw.strip() else None
    if p is None:
        ctx.auth.limiter.failed(client_ip(request))
        return page("login.html", 401, {"WWW-Authenticate": 'Bearer realm="licsync"'}, error="invalid or revoked token")
    if p.role not in ("tenant-admin", "catalog-admin"):
        raise forbidden("this token cannot open the dashboard (tenant and catalog admins only)")
    resp = RedirectResponse(home_of(p), status_code=303)
    resp.set_cookie(COOKIE, raw.strip(), max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/")
    return resp


@router.get("/")
def root() -> Response:
    return RedirectResponse("/ui/login", status_code=303)


@router.get("/ui/login")
def login_form(request: Request, token: str | None = None) -> Response:
    if token is not None:
        return _login(request, token)
    return page("login.html")


@router.post("/ui/login")
async def login_post(request: Request) -> Response:
    body = (await request.body())[:8192].decode("utf-8", "replace")
    raw = (parse_qs(body).get("token") or [""])[0]
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_login, request, raw)


@router.get("/ui/logout")
def logout() -> Response:
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


def _common(session: Session, tenant: str, p: Principal, request: Request) -> dict[str, Any]:
    now = ctx_of(request).clock()
    figures = pool(session, tenant, now)
    scope = p.catalog_scope()
    catalogs = [c for c in status.catalog_rows(session, tenant) if scope is None or c["id"] in scope]
    for c in catalogs:
        c["usage"] = charts.usage(c["consumed"], figures["purchased"])
    return {"tenant": tenant, "principal": p, "pool": figures, "grace": figures["grace"],
            "usage": charts.usage(figures["consumed"], figures["purchased"]), "catalogs": catalogs,
            "now": status._iso(now)}


@router.get("/ui/tenants/{name}")
def tenant_page(request: Request, name: str = TenantName) -> Response:
    with authorized(request, lambda p: p.may_see_dashboard(name)) as (session, p):
        ctx = _common(session, name, p, request)
        ctx["chart"] = charts.usage_chart(queries.ledger_history(session, name),
                                          forecast=forecast_for(session, name, ctx_of(request).clock()))
    return page("tenant.html", **ctx)


@router.get("/ui/tenants/{name}/catalogs/{catalog_id}")
def catalog_page(request: Request, catalog_id: str, name: str = TenantName) -> Response:
    with authorized(request, lambda p: p.may_read_catalog(name, catalog_id)) as (session, p):
        ctx = _common(session, name, p, request)
        row = next((c for c in ctx["catalogs"] if c["id"] == catalog_id), None)
        if row is None:
            raise ApiError(404, f"tenant {name!r} has no catalog {catalog_id!r}")
        ctx["catalog"] = row
        ctx["chart"] = charts.usage_chart(queries.ledger_history(session, name, catalog_id),
                                          forecast=forecast_for(session, name, ctx_of(request).clock(), catalog_id))
    return page("catalog.html", **ctx)
