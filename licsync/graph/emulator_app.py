"""The emulator's ASGI app: Graph v1.0 routes, the Entra ID token endpoint, and a control API.

One server hosts any number of tenants. A Graph request finds its tenant from its bearer
token; the identity routes carry the tenant id in the path, as login.microsoftonline.com does.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from licsync.graph.emulator_auth import AccessToken, AuthError, SigningKey, graph_error
from licsync.graph.emulator_state import Directory
from licsync.graph.emulator_tenant import EmulatedTenant, Reply

_JSON = "application/json"
# Knobs and directory operations the control API may call, by name. Nothing else is reachable.
TENANT_OPS = frozenset(
    {
        "throttle_next",
        "fail_next",
        "fail_page",
        "expire_tokens",
        "malformed_page",
        "drop_id_on_page",
        "reset_page",
        "hang_page",
        "token_endpoint_down",
        "revoke_secret",
        "clear_faults",
        "add_app",
    }
)
TENANT_SETTINGS = frozenset(
    {"page_size", "empty_page_every", "replay_every", "removed_in_initial", "premium", "token_lifetime", "realism"}
)
_WHEN_ARGS = ("when", "non_interactive", "failed")
DIRECTORY_OPS = frozenset(
    {
        "add_user",
        "add_users",
        "update_user",
        "disable",
        "enable",
        "soft_delete",
        "restore",
        "hard_delete",
        "set_sign_in",
        "prerender",
    }
)


class _CutResponse(Response):
    """Announces the whole body, sends half of it, and returns: the server closes the connection
    mid-body, as a reset or a dropped proxy connection looks to the client."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True})


def _reply(reply: Reply) -> Response:
    headers = dict(reply.headers)
    headers.setdefault("Content-Type", _JSON)
    return (_CutResponse if reply.cut else Response)(reply.body, reply.status, headers)


def _json(status: int, doc: Any) -> Response:
    return Response(orjson.dumps(doc), status, media_type=_JSON)


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


class Emulator:
    """Server-wide state: tenants, the shared clock, the access-token registry, the JWKS key."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta(0)
        self.tenants: dict[str, EmulatedTenant] = {}
        self.registry: dict[str, AccessToken] = {}
        self.signing_key = SigningKey()
        self.stats: Counter[str] = Counter()  # requests no tenant could be found for
        self.base_url = ""

    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float | timedelta) -> None:
        """Move the emulator clock forward (token lifetimes, 7-day delta tokens, 30-day soft deletes)."""
        self._offset += seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)

    def add_tenant(
        self,
        tenant_id: str | None = None,
        directory: Directory | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> EmulatedTenant:
        """A new tenant with its own directory and one registered app (a client secret)."""
        tenant_id = tenant_id or str(uuid.uuid4())
        if tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant_id} already exists")
        tenant = EmulatedTenant(tenant_id, directory or Directory(), self.now, self.registry, self.signing_key)
        tenant.client_id = client_id or str(uuid.uuid4())
        tenant.client_secret = client_secret or "emu~" + secrets.token_urlsafe(24)
        tenant.auth.add_app(tenant.client_id, tenant.client_secret)
        tenant.base_url = self.base_url
        self.tenants[tenant_id] = tenant
        return tenant

    def set_base_url(self, base_url: str) -> None:
        self.base_url = base_url
        for tenant in self.tenants.values():
            tenant.base_url = base_url

    # -- Graph ---------------------------------------------------------------------------------

    def _tenant_for(self, request: Request) -> tuple[EmulatedTenant | None, str | None, str]:
        authorization = request.headers.get("authorization")
        token = None
        if authorization and authorization.startswith("Bearer "):
            token = self.registry.get(authorization[7:].strip())
        tenant = self.tenants.get(token.tenant_id) if token is not None else None
        return tenant, authorization, token.client_id if token is not None else ""

    async def _graph(
        self, request: Request, role: str, handle: Callable[[EmulatedTenant], Any], endpoint: str = "delta"
    ) -> Response:
        tenant, authorization, client_id = self._tenant_for(request)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if tenant is None:
            self.stats["unauthenticated"] += 1
            self.stats["with_authorization_header" if authorization else "without_authorization_header"] += 1
            msg = "Access token validation failure." if authorization else "Access token is empty."
            return _reply(Reply(401, orjson.dumps(graph_error(401, "InvalidAuthenticationToken", msg).body)))
        tenant.requests.append((request.method, target, request.headers.get("user-agent", "")))
        tenant.stats["authorization_header"] += 1
        denied = tenant.gate(authorization, role)
        if denied is not None:
            return _reply(denied)
        tenant.stats["inflight"] += 1
        tenant.stats["max_inflight"] = max(tenant.stats["max_inflight"], tenant.stats["inflight"])
        try:
            throttled, headers, latency = tenant.meter(endpoint, client_id)
            if throttled is not None:
                result = throttled
            else:
                result = handle(tenant)
                if inspect.isawaitable(result):
                    result = await result
                if headers:
                    result = Reply(result.status, result.body, {**result.headers, **headers}, result.delay, result.cut)
            if result.delay or latency:
                await asyncio.sleep(result.delay + latency)
            return _reply(result)
        finally:
            tenant.stats["inflight"] -= 1

    async def delta(self, request: Request) -> Response:
        link_base = _base(request) + request.url.path
        return await self._graph(
            request, "User.Read.All", lambda t: t.delta(request.query_params, link_base, request.headers.get("prefer"))
        )

    async def users(self, request: Request) -> Response:
        select = request.query_params.get("$select")
        sign_in = bool(select and "signInActivity" in select)
        role = "AuditLog.Read.All" if sign_in else "User.Read.All"
        endpoint = "signIn" if sign_in else "users_select" if select else "users"
        link_base = _base(request) + request.url.path
        return await self._graph(request, role, lambda t: t.users(request.query_params, link_base, select), endpoint)

    async def users_count(self, request: Request) -> Response:
        consistency = request.headers.get("consistencylevel")
        return await self._graph(
            request, "User.Read.All", lambda t: t.users_count(request.query_params, consistency), "count"
        )

    async def user(self, request: Request) -> Response:
        select = request.query_params.get("$select")
        return await self._graph(
            request, "User.Read.All", lambda t: t.user(request.path_params["user"], select), "user"
        )

    async def deleted_users(self, request: Request) -> Response:
        link_base = _base(request) + request.url.path
        select = request.query_params.get("$select")
        return await self._graph(
            request,
            "User.Read.All",
            lambda t: t.deleted_users(request.query_params, link_base, select),
            "deletedItems",
        )

    async def send_mail(self, request: Request) -> Response:
        async def handle(tenant: EmulatedTenant) -> Reply:
            return tenant.send_mail(request.path_params["user"], await request.body())

        return await self._graph(request, "Mail.Send", handle, "sendMail")

    # -- identity --------------------------------------------------------------------------------

    def _identity_tenant(self, request: Request) -> EmulatedTenant | None:
        return self.tenants.get(request.path_params["tenant"])

    async def openid_configuration(self, request: Request) -> Response:
        tenant = self._identity_tenant(request)
        if tenant is None:
            return _json(400, {"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."})
        tenant.stats["openid"] += 1
        root = f"{_base(request)}/{tenant.tenant_id}"
        return _json(
            200,
            {
                "issuer": f"{root}/v2.0",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{root}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "tenant_region_scope": "EU",
            },
        )

    async def openid_configuration_v1(self, request: Request) -> Response:
        """The v1 endpoint's document: Entra's v1 access tokens name ``https://sts.windows.net/{tid}/``
        as their issuer, whatever host served the discovery."""
        tenant = self._identity_tenant(request)
        if tenant is None:
            return _json(400, {"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."})
        tenant.stats["openid"] += 1
        root = f"{_base(request)}/{tenant.tenant_id}"
        return _json(200, {"issuer": f"https://sts.windows.net/{tenant.tenant_id}/",
                           "authorization_endpoint": f"{root}/oauth2/authorize",
                           "token_endpoint": f"{root}/oauth2/token",
                           "jwks_uri": f"{root}/discovery/keys",
                           "id_token_signing_alg_values_supported": ["RS256"]})

    async def jwks(self, request: Request) -> Response:
        tenant = self._identity_tenant(request)
        if tenant is None:
            return _json(400, {"error": "invalid_tenant"})
        tenant.stats["jwks"] += 1
        return _json(200, self.signing_key.jwks())

    async def token(self, request: Request) -> Response:
        tenant = self._identity_tenant(request)
        if tenant is None:
            return _json(400, {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."})
        tenant.stats["token"] += 1
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        token_url = f"{_base(request)}/{tenant.tenant_id}/oauth2/v2.0/token"
        try:
            return _json(200, tenant.auth.issue(form, token_url))
        except AuthError as err:
            return Response(orjson.dumps(err.body), err.status, {**err.headers, "Content-Type": _JSON})

    # -- control API -----------------------------------------------------------------------------

    async def control(self, request: Request) -> Response:
        """``POST /_emulator/{tenant}/{op}`` with JSON keyword arguments; loopback clients only."""
        client = request.client.host if request.client else ""
        if client not in ("127.0.0.1", "::1", "localhost"):
            return _json(403, {"error": "the control API answers loopback clients only"})
        tid, op = request.path_params["tenant"], request.path_params["op"]
        if tid == "_server":
            return await self._server_control(request, op)
        tenant = next(iter(self.tenants.values()), None) if tid == "default" else self.tenants.get(tid)
        if tenant is None:
            return _json(404, {"error": f"no tenant {tid}"})
        if request.method == "GET":
            views = {
                "stats": lambda: dict(tenant.stats),
                "outbox": lambda: tenant.outbox,
                "requests": lambda: list(tenant.requests),
            }
            return _json(200, views[op]()) if op in views else _json(404, {"error": f"no view {op}"})
        try:
            kwargs = orjson.loads(await request.body() or b"{}")
            if not isinstance(kwargs, dict):
                raise TypeError("the body must be a JSON object of keyword arguments")
            if op == "configure":
                unknown = set(kwargs) - TENANT_SETTINGS
                if unknown:
                    raise TypeError(f"unknown settings {sorted(unknown)}")
                for key, value in kwargs.items():
                    setattr(tenant, key, value)
                result: Any = None
            elif op in TENANT_OPS:
                result = getattr(tenant, op)(**kwargs)
            elif op in DIRECTORY_OPS:
                for key in _WHEN_ARGS:
                    if isinstance(kwargs.get(key), str):
                        kwargs[key] = datetime.fromisoformat(kwargs[key])
                result = getattr(tenant.directory, op)(**kwargs)
            else:
                return _json(404, {"error": f"no operation {op}"})
        except (TypeError, ValueError, KeyError, orjson.JSONDecodeError) as exc:
            return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return _json(200, {"result": result})

    async def _server_control(self, request: Request, op: str) -> Response:
        kwargs = orjson.loads(await request.body() or b"{}") if request.method == "POST" else {}
        if op == "advance":
            self.advance(float(kwargs.get("seconds", 0)))
            return _json(200, {"now": self.now().isoformat()})
        if op == "add_tenant":
            t = self.add_tenant(kwargs.get("tenant_id"))
            return _json(200, {"tenant_id": t.tenant_id, "client_id": t.client_id, "client_secret": t.client_secret})
        if op == "stats":
            return _json(200, dict(self.stats))
        return _json(404, {"error": f"no operation {op}"})

    def asgi(self) -> Starlette:
        async def not_found(request: Request, _exc: Exception) -> Response:
            err = graph_error(404, "Request_ResourceNotFound", f"Resource '{request.url.path}' does not exist.")
            return _json(404, err.body)

        return Starlette(
            routes=[
                Route("/v1.0/users/delta", self.delta),
                Route("/v1.0/users/delta()", self.delta),
                Route("/v1.0/users", self.users),
                Route("/v1.0/users/$count", self.users_count),
                Route("/v1.0/users/{user}", self.user),
                Route("/v1.0/directory/deletedItems/microsoft.graph.user", self.deleted_users),
                Route("/v1.0/directory/deletedItems/graph.user", self.deleted_users),
                Route("/v1.0/users/{user}/sendMail", self.send_mail, methods=["POST"]),
                Route("/_emulator/{tenant}/{op}", self.control, methods=["GET", "POST"]),
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
                Route("/{tenant}/discovery/v2.0/keys", self.jwks),
                Route("/{tenant}/.well-known/openid-configuration", self.openid_configuration_v1),
                Route("/{tenant}/discovery/keys", self.jwks),
                Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
            ],
            exception_handlers={404: not_found},
        )
