"""The FastAPI application: wiring, security headers, and errors as ``{"error": "..."}``.

``create_app`` is the only entry point; ``licsync serve`` and ``licsync run`` pass it the loaded
settings and engine. Nothing here knows about seats: endpoints parse, authorize and call the read
models (``licsync.status``, ``licsync.api.queries``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from licsync import __version__
from licsync.api import pages, routes
from licsync.api.access_log import AccessLog
from licsync.api.auth import ApiError, Authenticator, FailureLimiter
from licsync.api.context import WEB, ApiContext, Liveness
from licsync.api.entra import EntraVerifier
from licsync.api.guards import BodyTooLarge, RequestGuard
from licsync.config import Settings
from licsync.errors import LicsyncError, NotFound, TransientError, truncate
from licsync.log import get_logger

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): the same security
    headers on every response, ``Cache-Control: no-store`` on everything but static assets, and
    redirects that never echo the Host header (``Location`` relative, or on ``[api] public_url``)."""

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public_url = public_url or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers[k] = v
                headers["Cache-Control"] = "public, max-age=3600" if static else "no-store"
                if "location" in headers:
                    headers["Location"] = self.public_url + relative(headers["location"])
            await send(message)

        await self.app(scope, receive, send_with_headers)


def relative(location: str) -> str:
    """A redirect target without scheme and host: the path and query of ``location``."""
    if location.startswith("/") and not location.startswith("//"):
        return location
    rest = location.split("://", 1)[-1].lstrip("/")
    path = rest[rest.find("/"):] if "/" in rest else "/"
    return "/" + path.lstrip("/")


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/ui") or request.url.path == "/"


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if _wants_html(request):
        return pages.render_error(request, status, message, headers)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_handlers(app: FastAPI) -> None:
    log = get_logger(component="api")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return error_response(request, exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(request, 422, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return error_response(request, 404, str(exc))

    @app.exception_handler(TransientError)
    async def _transient(request: Request, exc: TransientError) -> Response:
        return error_response(request, 503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        return error_response(request, 413, str(exc), {"Connection": "close"})

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> Response:
        if isinstance(exc, OperationalError):
            return await _db_down(request, exc)
        # Never the statement or its parameters (they hold what the caller sent): the driver's error class.
        log.error("database_error", path=request.url.path, error=type(exc.orig).__name__)
        return error_response(request, 500, "internal error")

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> Response:
        log.error("database_error", path=request.url.path, error=type(exc.orig).__name__)
        return error_response(request, 503, "database unavailable", {"Retry-After": "5"})

    @app.exception_handler(LicsyncError)
    async def _licsync(request: Request, exc: LicsyncError) -> Response:
        return error_response(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", path=request.url.path, error_type=type(exc).__name__, error=truncate(str(exc)))
        return error_response(request, 500, "internal error")


def read_engine(engine: Engine) -> Engine:
    """The engine of the read-only endpoints: on PostgreSQL the same pool in autocommit.

    Under READ COMMITTED every statement takes its own snapshot anyway, so a transaction around a
    read adds nothing but its BEGIN and the ROLLBACK on return to the pool: two of the access
    check's four round trips. SQLite keeps its transaction (no round trips; one snapshot for the
    whole status document)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _document_bearer(app: FastAPI, schemes: dict[str, Any]) -> None:
    """Add the bearer security scheme to the OpenAPI components (the operations name it themselves)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            generate().setdefault("components", {}).setdefault("securitySchemes", {}).update(schemes)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    clock: Callable[[], datetime] | None = None,
    liveness: Liveness | None = None,
    limiter: FailureLimiter | None = None,
    entra: Any = None,
) -> FastAPI:
    """The HTTP API and dashboard. ``clock`` evaluates seat facts (``--now``); credentials are
    always checked against real time. ``liveness`` makes ``/healthz`` require a fresh heartbeat."""
    if entra is None:
        verifier = EntraVerifier(settings)
        entra = verifier if verifier.enabled else None
    app = FastAPI(
        title="licsync",
        version=__version__,
        description="License seat status and launch-time access decisions. `Authorization: Bearer <token>`.",
        docs_url=None,  # Swagger UI loads scripts from a CDN, which the CSP (rightly) refuses
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api = settings.api
    limiter = limiter or FailureLimiter(api.failed_auth_limit, api.failed_auth_window.total_seconds())
    app.state.ctx = ApiContext(
        settings=settings,
        engine=engine,
        auth=Authenticator(entra=entra, limiter=limiter, tenants={t.name for t in settings.tenant},
                           trusted_proxies=api.trusted_proxies),
        clock=clock or (lambda: datetime.now(UTC)),
        liveness=liveness,
        inline_reads=engine.dialect.name == "sqlite",
        reads=read_engine(engine),
    )
    app.add_middleware(RequestGuard, settings=settings)  # inside SecurityHeaders: its refusals get the headers too
    app.add_middleware(SecurityHeaders, public_url=api.public_url)
    if settings.api.access_log:
        app.add_middleware(AccessLog)  # outermost: sees the final status of every request
    _install_handlers(app)
    app.router.routes.insert(0, routes.ACCESS_ROUTE)
    app.include_router(routes.router)
    _document_bearer(app, routes.SECURITY_SCHEMES)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")
    return app
