"""What every request meets before an endpoint: the Host, the path, the body's size, ``/metrics``' token.

``RequestGuard`` is pure ASGI middleware, so a refusal costs no parsing and reads nothing:

* a path holding a NUL character → 404 (no database would take it as a parameter);
* with ``[api] public_url`` set, a Host header naming another host → 400 (``/healthz`` and
  ``/metrics`` excepted: probes and scrapers reach the pod by its address);
* a body larger than the route's cap (``body_limit``) → 413 at once when ``Content-Length`` says
  so, else as soon as the streamed body passes the cap (``BodyTooLarge``), with ``Connection:
  close`` so the rest is never read. Endpoints authenticate *before* they read a body
  (:func:`read_body`), so an unauthenticated caller never gets a byte of it parsed;
* ``/metrics`` needs ``Authorization: Bearer <[api] metrics_token>`` when one is set, and its
  ``tenant`` labels are the tenants' names only when ``metrics_tenant_labels`` says so (``auto``:
  names behind a token, else ``t1``, ``t2``… in the configuration's order), so a stranger is never
  told which tenants this licsync serves. This wraps whatever renders the metrics.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from licsync.config import Settings

STATEMENTS = re.compile(r"^/api/v1/tenants/[^/]+/statements/?$")
FORMS = frozenset({"/ui/login", "/ui/logout"})
UNGUARDED_HOST = frozenset({"/healthz", "/metrics"})
_TENANT_LABEL = re.compile(rb'tenant="((?:[^"\\]|\\.)*)"')


class BodyTooLarge(Exception):
    """A request body passed its route's cap while it was being read."""


def body_limit(settings: Settings, method: str, path: str) -> int:
    api = settings.api
    if method == "POST" and STATEMENTS.match(path):
        return api.max_body_statements
    if method == "POST" and path in FORMS:
        return api.max_body_form
    return api.max_body_other


async def read_body(request: Request) -> bytes:
    """The request body, read in chunks; the guard's cap stops it (BodyTooLarge → 413) past the route's limit."""
    chunks = [chunk async for chunk in request.stream()]
    return b"".join(chunks)


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[Message, Message]:
    body = orjson.dumps({"error": message})
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return ({"type": "http.response.start", "status": status, "headers": head},
            {"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        api = settings.api
        self.hosts: frozenset[str] | None = None
        if api.public_url:
            netloc = api.public_url.split("://", 1)[1].lower()
            default = ":443" if api.public_url.startswith("https:") else ":80"
            self.hosts = frozenset({netloc, netloc.removesuffix(default)} |
                                   ({netloc + default} if ":" not in netloc.rsplit("]", 1)[-1] else set()))
        self.metrics_token = api.metrics_token.resolve().encode() if api.metrics_token else None
        labels = api.metrics_tenant_labels
        self.relabel = (labels == "index") or (labels == "auto" and self.metrics_token is None)
        self.index = {t.name.encode(): f"t{i}".encode() for i, t in enumerate(settings.tenant, 1)}

    async def _refuse(self, send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        for m in _json(status, message, headers):
            await send(m)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "\x00" in path:
            await self._refuse(send, 404, "not found")
            return
        headers = Headers(scope=scope)
        if self.hosts is not None and path not in UNGUARDED_HOST and headers.get("host", "").lower() not in self.hosts:
            await self._refuse(send, 400, "unknown host")
            return
        limit = body_limit(self.settings, scope["method"], path)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            status, why = (413, f"request body larger than {limit} bytes") if length.isdigit() else (
                400, "invalid Content-Length")
            await self._refuse(send, status, why, {"Connection": "close"})
            return
        if path == "/metrics":
            await self._metrics(scope, receive, send, headers)
            return
        await self.app(scope, _capped(receive, limit), send)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        if self.metrics_token is not None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.metrics_token):
                await self._refuse(send, 401, "missing or invalid metrics token",
                                   {"WWW-Authenticate": 'Bearer realm="licsync-metrics"'})
                return
        if not self.relabel:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def buffered(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _TENANT_LABEL.sub(lambda m: b'tenant="' + self.index.get(m.group(1), b"unconfigured") + b'"',
                                     b"".join(parts))
            MutableHeaders(scope=start)["content-length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body larger than {limit} bytes")
        return message

    return capped
