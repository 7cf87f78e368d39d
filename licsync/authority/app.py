"""The authority's HTTP face: it parses, calls ``service`` in one transaction, and answers JSON.

Deployments call ``/v1/activate``, ``/v1/renew`` and ``/v1/deactivate`` (the signed key or lease
is their credential). The vendor's endpoints need ``Authorization: Bearer <vendor token>``
(``licsync authority token``). A refusal is ``{"error": code, "detail": sentence}`` with a
stable ``code``: ``moved``, ``revoked``, ``unknown_subscription``, ``tenant_bound``,
``stale_key``, ``bad_request``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from licsync.authority import service
from licsync.errors import ConfigError, InputError, LicsyncError
from licsync.log import get_logger


class ActivateBody(BaseModel):
    key: str = Field(max_length=16_384)
    tenant_id: str = Field(max_length=64)
    deployment_id: str = Field(max_length=128)


class LeaseBody(BaseModel):
    lease: str = Field(max_length=4096)


class KeyBody(BaseModel):
    key: str = Field(max_length=16_384)


class MoveBody(BaseModel):
    tenant_id: str = Field(max_length=64)


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def create_app(engine: Engine, signer: service.Signer, clock: Callable[[], datetime] | None = None) -> FastAPI:
    now = clock or (lambda: datetime.now(UTC))
    log = get_logger(component="authority")
    app = FastAPI(title="licsync activation authority", version="1")

    @app.exception_handler(LicsyncError)
    async def _refusal(_request: Request, exc: LicsyncError) -> JSONResponse:
        if isinstance(exc, service.Refused):
            return _error(exc.status, exc.code, str(exc))
        if isinstance(exc, InputError | ConfigError):
            return _error(400, "bad_request", str(exc))
        return _error(500, "error", type(exc).__name__)

    def run(call: str, fn: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        try:
            with engine.begin() as conn:
                out = fn(conn)
        except service.Refused as exc:
            with engine.begin() as conn:
                service.audit_refusal(conn, now(), call, exc)
            log.warning("authority_refused", call=call, code=exc.code)
            raise
        log.info("authority_answer", call=call, outcome=out.get("outcome") or out.get("state"),
                 subscription=out.get("subscription_id"))
        return out

    def vendor(authorization: str | None) -> JSONResponse | None:
        token = (authorization or "")[7:].strip() if (authorization or "").lower().startswith("bearer ") else ""
        with engine.connect() as conn:
            if service.vendor_token_ok(conn, token):
                return None
        return _error(401, "unauthorized", "a vendor token is required (licsync authority token)")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/activate")
    def activate(body: ActivateBody) -> dict[str, Any]:
        return run("activate",
                   lambda c: service.activate(c, signer, body.key, body.tenant_id, body.deployment_id, now()))

    @app.post("/v1/renew")
    def renew(body: LeaseBody) -> dict[str, Any]:
        return run("renew", lambda c: service.renew(c, signer, body.lease, now()))

    @app.post("/v1/deactivate")
    def deactivate(body: LeaseBody) -> dict[str, Any]:
        return run("deactivate", lambda c: service.deactivate(c, signer, body.lease, now()))

    @app.get("/v1/activations", response_model=None)
    def activations(authorization: str | None = Header(None)) -> Any:
        if (denied := vendor(authorization)) is not None:
            return denied
        with engine.connect() as conn:
            return service.list_activations(conn)

    @app.post("/v1/keys", response_model=None)
    def import_key(body: KeyBody, authorization: str | None = Header(None)) -> Any:
        if (denied := vendor(authorization)) is not None:
            return denied
        return run("import_key", lambda c: service.import_key(c, body.key, now(), "api"))

    @app.post("/v1/subscriptions/{subscription_id}/move", response_model=None)
    def move(subscription_id: str, body: MoveBody, authorization: str | None = Header(None)) -> Any:
        if (denied := vendor(authorization)) is not None:
            return denied
        return run("move", lambda c: service.move(c, subscription_id, body.tenant_id, now(), "api"))

    @app.post("/v1/subscriptions/{subscription_id}/revoke", response_model=None)
    def revoke(subscription_id: str, authorization: str | None = Header(None)) -> Any:
        if (denied := vendor(authorization)) is not None:
            return denied
        return run("revoke", lambda c: service.revoke(c, subscription_id, now(), "api"))

    return app
