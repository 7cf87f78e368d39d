"""The dashboard: server-rendered pages for tenant and catalog admins (no JavaScript).

Authentication is the API's: a bearer header, or the token given once on the sign-in form, kept in
an HttpOnly, SameSite=Strict cookie so scripts cannot read it and other sites cannot send it.
Every page is a GET that changes nothing. The two requests that change the session — sign in and
sign out — are POSTs carrying a CSRF token (a random value in a SameSite=Strict cookie of its own,
repeated in the form: another site can send neither), so a cross-site form cannot sign a victim in
as the attacker (login CSRF) or out. A link never carries a token: ``/ui/login?code=…`` takes a
one-time code (``ApiContext.login_codes``, five minutes) and exchanges it for the cookie.
A catalog admin sees the tenant's seat pool (to know whether seats are left) and only their own
catalogs: other catalogs' names, counts and holders never reach their page or export.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from licsync import status
from licsync.api import charts, queries
from licsync.api.auth import COOKIE, ApiError, forbidden
from licsync.api.context import WEB
from licsync.api.guards import read_body
from licsync.api.routes import TenantName, authorized, ctx_of, pool
from licsync.status import forecast_for
from licsync.tokens import Principal

router = APIRouter(include_in_schema=False)
env = Environment(loader=FileSystemLoader(WEB / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
COOKIE_MAX_AGE = 8 * 3600
CSRF_COOKIE = "licsync_csrf"
_CSRF_SHAPE = re.compile(r"^[A-Za-z0-9_-]{32}$")


def _csrf(request: Request | None) -> tuple[str, bool]:
    """This browser's CSRF token, and whether it is new (then the response sets its cookie)."""
    have = request.cookies.get(CSRF_COOKIE, "") if request is not None else ""
    if _CSRF_SHAPE.match(have):
        return have, False
    return secrets.token_urlsafe(24), True


def _https(request: Request) -> bool:
    """Cookies get ``Secure`` when the browser came over HTTPS (directly, via a trusted proxy, or per public_url)."""
    ctx = ctx_of(request)
    return ctx.auth.via_https(request) or (ctx.settings.api.public_url or "").startswith("https://")


def page(template: str, status_code: int = 200, headers: dict[str, str] | None = None, *,
         request: Request | None = None, **context: Any) -> Response:
    csrf, new = _csrf(request)
    resp = HTMLResponse(env.get_template(template).render(csrf=csrf, **context), status_code=status_code,
                        headers=headers)
    if new:
        resp.set_cookie(CSRF_COOKIE, csrf, max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict",
                        secure=request is not None and _https(request), path="/ui")
    return resp


def render_error(request: Request, status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if status_code == 401:
        return page("login.html", 401, headers, request=request, error=message)
    return page("error.html", status_code, headers, request=request, status=status_code, message=message)


def home_of(p: Principal) -> str:
    return f"/ui/tenants/{p.tenant}"


def _login(request: Request, raw: str) -> Response:
    """Check a token given on the form (or redeemed from a code); on success keep it in the cookie and go home."""
    ctx = ctx_of(request)
    with Session(ctx.engine) as session:
        p = ctx.auth.verify(session, raw.strip()) if raw.strip() else None
    if p is None:
        ctx.auth.refuse(request)  # 429 once this address failed too often
        return page("login.html", 401, {"WWW-Authenticate": 'Bearer realm="licsync"'}, request=request,
                    error="invalid or revoked token")
    if p.role not in ("tenant-admin", "catalog-admin"):
        raise forbidden("this token cannot open the dashboard (tenant and catalog admins only)")
    resp = RedirectResponse(home_of(p), status_code=303)
    resp.set_cookie(COOKIE, raw.strip(), max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict",
                    secure=_https(request), path="/")
    return resp


async def _form(request: Request) -> dict[str, str]:
    """The posted form (under its cap), once its CSRF token matches this browser's cookie; else 403."""
    body = (await read_body(request)).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(body).items() if v}
    cookie, given = request.cookies.get(CSRF_COOKIE, ""), form.get("csrf", "")
    if not (_CSRF_SHAPE.match(cookie) and hmac.compare_digest(cookie.encode(), given.encode())):
        raise ApiError(403, "this form expired or came from another site; reload the page and try again")
    return form


@router.get("/")
def root() -> Response:
    return RedirectResponse("/ui/login", status_code=303)


@router.get("/ui/login")
def login_form(request: Request, code: str | None = None) -> Response:
    """The sign-in form; with ``?code=`` a one-time code is exchanged for the session cookie."""
    if code is not None:
        raw = ctx_of(request).login_codes.redeem(code)
        if raw is None:
            ctx_of(request).auth.refuse(request)
            return page("login.html", 401, request=request, error="this sign-in link is used or expired")
        return _login(request, raw)
    return page("login.html", request=request)


@router.post("/ui/login")
async def login_post(request: Request) -> Response:
    form = await _form(request)
    return await run_in_threadpool(_login, request, form.get("token", ""))


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    await _form(request)
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


@router.get("/ui/logout")
def logout_form(request: Request) -> Response:
    """Signing out is a POST (the button on every page); a GET changes nothing."""
    return page("error.html", 405, {"Allow": "POST"}, request=request, status=405,
                message="use the Sign out button to sign out")


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
    return page("tenant.html", request=request, **ctx)


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
    return page("catalog.html", request=request, **ctx)
