"""The JSON API (SPEC §5), CSV exports, ``/healthz`` and ``/metrics``.

Endpoints are plain ``def``: the database calls block, so Starlette runs them in its thread pool
and the event loop (shared with the scheduler under ``licsync run``) stays free. Each request uses
one session for authentication and its read, so the hot path opens one connection. The one
exception is the launch-time access check on SQLite, which reads on the loop (see ``ACCESS_ROUTE``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Path
from pydantic import BaseModel
from sqlalchemy import text
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from licsync import metrics as instruments
from licsync import service, status, tokens
from licsync.api import queries
from licsync.api.auth import ApiError, forbidden
from licsync.api.context import ApiContext
from licsync.api.csvout import csv_response
from licsync.api.guards import read_body
from licsync.api.metrics import CONTENT_TYPE, render_metrics
from licsync.db import session_scope
from licsync.errors import InputError
from licsync.log import get_logger
from licsync.tokens import Principal

# The bearer scheme is documented in OpenAPI (each /api/v1 operation's ``security``, and
# ``SECURITY_SCHEMES`` merged into the components by ``create_app``), not declared as a FastAPI
# dependency: ``authorized`` reads the credential itself, and solving that dependency on every request
# cost a quarter of the access check's CPU (measured: 1.14 → 0.86 ms per in-process request).
SECURITY_SCHEMES = {"HTTPBearer": {"type": "http", "scheme": "bearer", "description": "An API token from "
                                   "`licsync token create`, or an Entra ID access token where the tenant enabled it."}}
router = APIRouter()
api = APIRouter(prefix="/api/v1")
TENANT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
TenantName = Path(pattern=f"^{TENANT_NAME}$", description="The tenant's name in the configuration.")

STATUS_CSV = ("kind", "id", "name", "purchased", "consumed", "available", "usage_pct", "grace_state", "grace_ends_at")
HOLDERS_CSV = ("user_id", "user_principal_name", "display_name", "seat_since", "seat_reason", "reason_sentence",
               "account", "catalogs")


class AccessDecision(BaseModel):
    licensed: bool
    reason: str
    user_id: str
    holds_seat: bool
    since: str | None
    sentence: str


class ErrorBody(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or revoked token"},
    403: {"model": ErrorBody, "description": "the token does not grant this tenant or catalog"},
    429: {"model": ErrorBody, "description": "too many failed authentications from this address"},
}


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def json(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")


def _touch(ctx: ApiContext, token_id: str) -> None:
    try:
        with session_scope(ctx.engine) as s:
            tokens.touch(s, token_id, datetime.now(UTC))
    except Exception as exc:  # bookkeeping only: never fail or slow a request for it
        get_logger(component="api").debug("token_touch_failed", error=type(exc).__name__)


@contextmanager
def authorized(request: Request, allowed: Callable[[Principal], bool], *,
               readonly: bool = False) -> Iterator[tuple[Session, Principal]]:
    """A session and the caller, who must pass ``allowed`` (else 403; no/bad credential → 401).
    ``readonly``: the session of an endpoint that only reads (``ApiContext.reads``)."""
    ctx = ctx_of(request)
    with Session((ctx.reads or ctx.engine) if readonly else ctx.engine) as session:
        principal = ctx.auth.principal(request, session)
        if not allowed(principal):
            raise forbidden()
        if ctx.auth.due_touch(principal.token_id):
            threading.Thread(target=_touch, args=(ctx, principal.token_id), daemon=True).start()
        yield session, principal


def pool(session: Session, tenant: str, now: datetime) -> dict[str, Any]:
    """Tenant-wide seat figures and grace, as the status JSON has them (without the catalog list)."""
    return status.seat_figures(session, tenant, now)


@api.get("/tenants/{name}/status", responses=ERRORS, summary="Seat status of a tenant (tenant admins)")
def tenant_status(request: Request, name: str = TenantName) -> Response:
    with authorized(request, lambda p: p.is_tenant_admin(name), readonly=True) as (session, _p):
        return json(status.tenant_status(session, name, ctx_of(request).clock()))


@api.get("/tenants/{name}/catalogs/{catalog_id}/status", responses=ERRORS,
         summary="Seat status of one catalog (its catalog admins, tenant admins)")
def catalog_status(request: Request, catalog_id: str, name: str = TenantName) -> Response:
    with authorized(request, lambda p: p.may_read_catalog(name, catalog_id), readonly=True) as (session, _p):
        now = ctx_of(request).clock()
        out = status.catalog_status(session, name, catalog_id, now)
        figures = pool(session, name, now)
        out = out | {"tenant": name, "grace": figures["grace"],
                     "pool": {k: figures[k] for k in ("purchased", "consumed", "available")}}
        return json(out)


@api.get("/tenants/{name}/access/{user_id}", responses=ERRORS | {200: {"model": AccessDecision}},
         summary="Is this learner licensed now? (platform tokens, tenant admins)")
def access(request: Request, user_id: str, name: str = TenantName) -> Response:
    return _access(request, name, user_id)


def _access(request: Request, name: str, user_id: str) -> Response:
    started, code = time.perf_counter(), "500"
    try:
        with authorized(request, lambda p: p.may_decide_access(name), readonly=True) as (session, _p):
            resp = json(service.access_decision(session, name, user_id, ctx_of(request).clock()))
        code = str(resp.status_code)
        return resp
    except ApiError as exc:
        code = str(exc.status)
        raise
    finally:
        instruments.ACCESS_SECONDS.labels(code).observe(time.perf_counter() - started)


class _TenantName(Convertor[str]):
    regex = TENANT_NAME

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def _pool_has_room(engine: Any) -> bool:
    """Whether a connection can be had without waiting (fewer checked out than the pool keeps):
    the loop must never sit in the pool's queue while thread-pool endpoints hold every connection."""
    pool = engine.pool
    if not (hasattr(pool, "checkedout") and hasattr(pool, "size")):
        return True  # SQLite's single-connection pools: nothing to wait for
    return bool(pool.checkedout() < pool.size())


async def _access_fast(request: Request) -> Response:
    name, user_id = request.path_params["name"], request.path_params["user_id"]
    ctx = ctx_of(request)
    if ctx.inline_reads and _pool_has_room(ctx.engine):
        return _access(request, name, user_id)
    return await run_in_threadpool(_access, request, name, user_id)


register_url_convertor("licsync_tenant", _TenantName())
# The launch-time check, asked at every course launch, as a plain Starlette route that ``create_app``
# puts first: FastAPI's per-request machinery (route resolution through the included routers,
# parameter solving and validation) cost a sixth of the check (in-process 0.70 → 0.60 ms of CPU).
# Same function, same error handlers; the FastAPI route above stays for the OpenAPI document and
# answers what this one does not match (a tenant name that breaks the pattern gets its 422 there).
#
# On SQLite (``ApiContext.inline_reads``) the check runs on the event loop instead of the thread
# pool: one statement of indexed reads of a local WAL database (~0.3 ms; a WAL reader never waits for
# a writer, and there is no network to stall on), where the hand-off to a worker thread and back, and
# the GIL passing between the two, cost more than the reads and made the tail: at 500 requests/s on a
# loaded 2-core machine p99 went from 29–185 ms (thread pool) to 3.4–4.5 ms (inline). It goes to the
# pool all the same when the connection pool has no idle connection (busy status or export
# requests), so the loop never waits for one. On PostgreSQL the reads cross a socket that can stall,
# so they always stay off the loop, in the thread pool.
ACCESS_ROUTE = Route("/api/v1/tenants/{name:licsync_tenant}/access/{user_id}", _access_fast, methods=["GET"],
                     include_in_schema=False)


MAX_STATEMENTS = 10_000


STATEMENTS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}}}


@api.post("/tenants/{name}/statements", responses=ERRORS | {
    400: {"model": ErrorBody, "description": "a body that is not JSON, a bad statement, or a tenant whose "
          "subscription does not count first access; nothing was stored"},
    413: {"model": ErrorBody, "description": f"more than {MAX_STATEMENTS} statements in one request, or a body "
          "larger than [api] max_body_statements"}},
          summary="xAPI-style launched/experienced statements (first_access model; platform tokens, tenant admins)",
          openapi_extra=STATEMENTS_BODY)
async def statements(request: Request, name: str = TenantName) -> Response:
    """A statement or a list of them; the batch is validated whole and stored whole, or not at all.

    The caller is authenticated before a byte of the body is read (an unauthenticated body is never
    read, let alone parsed); the body is read in chunks under its cap, then parsed off the event loop."""
    await run_in_threadpool(_may_post, request, name)
    raw = await read_body(request)
    return await run_in_threadpool(_store_statements, request, name, raw)


def _may_post(request: Request, name: str) -> None:
    with authorized(request, lambda p: p.may_decide_access(name), readonly=True):
        pass


def _store_statements(request: Request, name: str, raw: bytes) -> Response:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, list | dict):
        raise ApiError(400, "the body must be a statement (a JSON object) or a list of them")
    batch = body if isinstance(body, list) else [body]
    if len(batch) > MAX_STATEMENTS:
        raise ApiError(413, f"at most {MAX_STATEMENTS} statements per request")
    with authorized(request, lambda p: p.may_decide_access(name)) as (session, principal):
        ctx = ctx_of(request)
        try:
            result = service.ingest_statements(session, ctx.settings, name, batch, ctx.clock(),
                                               actor=f"api:{principal.subject or principal.role}")
        except InputError as exc:
            session.rollback()
            detail = "; ".join(str(p) for p in exc.problems[:5])
            raise ApiError(400, f"{exc}{': ' + detail if detail else ''}") from None
        session.commit()
        return json(result.summary())


@api.get("/me", responses=ERRORS, summary="The caller's tenant, role and catalogs")
def me(request: Request) -> Response:
    with authorized(request, lambda p: True) as (_s, p):
        return json({"tenant": p.tenant, "role": p.role, "catalogs": sorted(p.catalogs), "subject": p.subject})


def status_rows(session: Session, tenant: str, p: Principal, now: datetime) -> list[dict[str, Any]]:
    figures = pool(session, tenant, now)
    purchased, grace = figures["purchased"], figures["grace"]

    def pct(n: int) -> float | str:
        return round(100.0 * n / purchased, 1) if purchased else ""

    rows: list[dict[str, Any]] = []
    if p.role == "tenant-admin":
        rows.append({"kind": "tenant", "id": tenant, "name": tenant, "purchased": purchased,
                     "consumed": figures["consumed"], "available": figures["available"],
                     "usage_pct": pct(figures["consumed"]), "grace_state": grace["state"],
                     "grace_ends_at": grace["ends_at"]})
    scope = p.catalog_scope()
    for c in status.catalog_rows(session, tenant):
        if scope is None or c["id"] in scope:
            rows.append({"kind": "catalog", "id": c["id"], "name": c["name"], "purchased": purchased,
                         "consumed": c["consumed"], "available": purchased - c["consumed"],
                         "usage_pct": pct(c["consumed"]), "grace_state": grace["state"],
                         "grace_ends_at": grace["ends_at"]})
    return rows


@api.get("/tenants/{name}/export/status.csv", responses=ERRORS, response_class=Response,
         summary="The status table as CSV (catalog admins: their catalogs)")
def export_status(request: Request, name: str = TenantName) -> Response:
    with authorized(request, lambda p: p.may_see_dashboard(name)) as (session, p):
        rows = status_rows(session, name, p, ctx_of(request).clock())
    return csv_response(f"{name}-status.csv", STATUS_CSV, rows)


@api.get("/tenants/{name}/export/holders.csv", responses=ERRORS, response_class=Response,
         summary="Seat holders and their reasons as CSV (catalog admins: their catalogs' holders)")
def export_holders(request: Request, name: str = TenantName) -> Response:
    with authorized(request, lambda p: p.may_see_dashboard(name)) as (session, p):
        rows = list(queries.seat_holders(session, name, p.catalog_scope()))
    return csv_response(f"{name}-seat-holders.csv", HOLDERS_CSV, rows)


@router.get("/healthz", summary="200 when the database answers (and, under `run`, the scheduler beats)")
def healthz(request: Request) -> Response:
    ctx = ctx_of(request)
    body: dict[str, Any] = {"status": "ok"}
    healthy = True
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        body["database"] = "ok"
    except Exception as exc:
        healthy, body["database"] = False, f"unavailable ({type(exc).__name__})"
    if ctx.liveness is not None:
        ok, detail = ctx.liveness()
        healthy = healthy and ok
        body["scheduler"] = detail
    if not healthy:
        body["status"] = "unavailable"
    return json(body, 200 if healthy else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text format 0.0.4)")
def metrics(request: Request) -> Response:
    ctx = ctx_of(request)
    body = render_metrics(ctx.engine, ctx.settings, ctx.clock())
    return Response(body, media_type=CONTENT_TYPE)


for _route in api.routes:
    _route.openapi_extra = {"security": [{"HTTPBearer": []}], **(getattr(_route, "openapi_extra", None) or {})}
router.include_router(api)
