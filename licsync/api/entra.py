"""Microsoft Entra ID bearer tokens for the API: an alternative to licsync's own tokens.

A tenant opts in by naming its API app registration (``[[tenant]]`` keys):

* ``api_audience`` — the App ID URI (``api://…``): the ``aud`` of **v1** access tokens, what a
  default app registration issues (``accessTokenAcceptedVersion`` unset);
* ``api_client_id`` — the API app's client id (a GUID): the ``aud`` of **v2** access tokens
  (``accessTokenAcceptedVersion = 2``). An ``api_audience`` that is itself a GUID counts as this;
* ``api_admin_role`` — app role granting tenant-admin (default ``LicSync.Admin``);
* ``api_platform_role`` — app role granting access decisions (default ``LicSync.Platform``);
* ``api_catalog_admin_roles`` — ``{app role or group object id: [catalog ids]}`` granting catalog-admin;
* ``api_issuer`` — an extra accepted issuer (unusual clouds).

Each version is checked against its own issuer and its own audience: a v1 token
(``ver`` 1.0, ``iss`` ``https://sts.windows.net/{tid}/``) must name the App ID URI, a v2 token
(``ver`` 2.0, ``iss`` ``{authority}/{tid}/v2.0``) the client id. Issuers and the signing keys'
``jwks_uri`` come from OIDC discovery (``{authority}/{tid}/v2.0/.well-known/openid-configuration``
and the v1 document ``{authority}/{tid}/.well-known/openid-configuration``), over TLS that trusts
the tenant's ``ca_bundle`` (environment variables never decide), cached for an hour and re-read
when a token names an unknown key id (Entra rotates keys), at most every ``refetch_after``.

Validation: RS256 only (never ``none`` or HMAC with a public key as secret), ``iss``, ``aud``,
``exp``/``nbf`` with 60 s leeway, and ``tid`` must be the tenant's.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from licsync.api.auth import ApiError
from licsync.config import Settings, TenantConfig
from licsync.errors import truncate
from licsync.graph.tls import client_ssl_context
from licsync.log import get_logger
from licsync.tokens import Principal

DEFAULT_ADMIN_ROLE = "LicSync.Admin"
DEFAULT_PLATFORM_ROLE = "LicSync.Platform"
NO_ROLE = "none"  # a valid token that grants nothing: 403 everywhere
V1, V2 = "1.0", "2.0"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass
class _Meta:
    """A tenant's discovery facts and signing keys."""

    fetched: float = 0.0
    issuers: dict[str, set[str]] = field(default_factory=dict)  # token version → accepted issuers
    by_kid: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def options_of(tenant: TenantConfig) -> dict[str, Any] | None:
    """The Entra ID API options of a tenant, or None when it has not enabled them."""
    app_id_uri, client_id = tenant.api_audience, tenant.api_client_id
    if app_id_uri and _GUID.match(app_id_uri) and not client_id:
        app_id_uri, client_id = None, app_id_uri  # the client id given as the audience: v2 tokens
    if not (app_id_uri or client_id):
        return None
    return {
        "audiences": {V1: [app_id_uri] if app_id_uri else [], V2: [client_id] if client_id else []},
        "admin_role": tenant.api_admin_role or DEFAULT_ADMIN_ROLE,
        "platform_role": tenant.api_platform_role or DEFAULT_PLATFORM_ROLE,
        "catalog_roles": dict(tenant.api_catalog_admin_roles or {}),
        "extra_issuer": tenant.api_issuer,
    }


def token_version(claims: dict[str, Any]) -> str:
    """``ver`` as Entra writes it; a token without one is judged by its issuer's shape."""
    ver = str(claims.get("ver", ""))
    if ver in (V1, V2):
        return ver
    return V1 if "sts." in str(claims.get("iss", "")) else V2


class EntraVerifier:
    """Validates Entra ID access tokens of the tenants that enabled them."""

    def __init__(
        self,
        settings: Settings,
        *,
        ttl: float = 3600.0,
        refetch_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenants = {t.tenant_id.lower(): t for t in settings.tenant if options_of(t) is not None}
        self.ttl, self.refetch_after, self.clock = ttl, refetch_after, clock
        self._meta: dict[str, _Meta] = {t.name: _Meta() for t in self.tenants.values()}
        self.log = get_logger(component="api.entra")

    @property
    def enabled(self) -> bool:
        return bool(self.tenants)

    @staticmethod
    def discovery_urls(tenant: TenantConfig) -> dict[str, str]:
        root = f"{tenant.authority}/{tenant.tenant_id}"
        return {V2: f"{root}/v2.0/.well-known/openid-configuration", V1: f"{root}/.well-known/openid-configuration"}

    def _fetch(self, tenant: TenantConfig) -> tuple[dict[str, set[str]], dict[str, Any]]:
        urls = self.discovery_urls(tenant)
        with httpx.Client(verify=client_ssl_context(tenant.ca_bundle), trust_env=False, timeout=5.0) as client:
            v2 = _json(client.get(urls[V2]))
            try:
                v1_issuer = str(_json(client.get(urls[V1]))["issuer"])
            except (httpx.HTTPError, ValueError, KeyError):
                v1_issuer = f"https://sts.windows.net/{tenant.tenant_id}/"  # what Entra's v1 document says
            jwks_uri = str(v2.get("jwks_uri", ""))
            if urlsplit(jwks_uri).scheme != "https":
                raise ValueError(f"discovery names a jwks_uri that is not https: {jwks_uri!r}")
            doc = _json(client.get(jwks_uri))
        keys: dict[str, Any] = {}
        for jwk in doc.get("keys", []):
            if jwk.get("kty") != "RSA" or not jwk.get("kid") or jwk.get("use", "sig") != "sig":
                continue
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        extra = {str(tenant.api_issuer)} if tenant.api_issuer else set()
        return {V1: {v1_issuer} | extra, V2: {str(v2["issuer"])} | extra}, keys

    def _lookup(self, tenant: TenantConfig, kid: str) -> tuple[Any, dict[str, set[str]]]:
        """(the key, the issuers); the key is None for a kid the keys do not have."""
        meta = self._meta[tenant.name]
        now = self.clock()
        key = meta.by_kid.get(kid)
        if key is not None and now - meta.fetched < self.ttl:
            return key, meta.issuers
        with meta.lock:
            key = meta.by_kid.get(kid)
            fresh = now - meta.fetched < self.ttl
            if key is not None and fresh:
                return key, meta.issuers
            if meta.fetched and now - meta.fetched < self.refetch_after and fresh:
                return None, meta.issuers  # unknown kid, keys read moments ago: do not let tokens hammer the IdP
            try:
                meta.issuers, meta.by_kid = self._fetch(tenant)
                meta.fetched = now
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWKError) as exc:
                self.log.warning("entra_discovery_failed", tenant=tenant.name, error=truncate(str(exc)))
                if key is not None:
                    return key, meta.issuers  # keep working on the keys we had
                raise ApiError(503, "cannot verify Entra ID tokens right now (signing keys unavailable)") from None
            return meta.by_kid.get(kid), meta.issuers

    def verify(self, raw: str) -> Principal | None:
        """The principal of a valid token, None for any invalid one (the caller answers 401)."""
        try:
            header = jwt.get_unverified_header(raw)
            unverified = jwt.decode(raw, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if header.get("alg") != "RS256" or not header.get("kid"):
            return None
        tenant = self.tenants.get(str(unverified.get("tid", "")).lower())
        if tenant is None:
            return None
        opts = options_of(tenant)
        assert opts is not None
        ver = token_version(unverified)
        audiences = opts["audiences"][ver]
        if not audiences:
            self.log.info("entra_token_rejected", tenant=tenant.name, why=f"v{ver} tokens not configured")
            return None
        key, issuers = self._lookup(tenant, str(header["kid"]))
        if key is None:
            return None
        try:
            claims = jwt.decode(raw, key, algorithms=["RS256"], audience=audiences, issuer=sorted(issuers[ver]),
                                leeway=60, options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            self.log.info("entra_token_rejected", tenant=tenant.name, version=ver, why=type(exc).__name__)
            return None
        if str(claims.get("tid", "")).lower() != tenant.tenant_id.lower() or token_version(claims) != ver:
            return None
        return principal_from_claims(tenant.name, claims, opts)


def _json(resp: httpx.Response) -> dict[str, Any]:
    resp.raise_for_status()
    doc = resp.json()
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def principal_from_claims(tenant: str, claims: dict[str, Any], opts: dict[str, Any]) -> Principal:
    """Rights from app roles (``roles``) and group ids (``groups``): admin > catalog admin > platform."""
    roles = {str(r) for r in claims.get("roles") or []}
    granted = roles | {str(g) for g in claims.get("groups") or []}
    subject = str(claims.get("preferred_username") or claims.get("upn") or claims.get("oid") or claims.get("azp")
                  or claims.get("appid") or "entra")
    if opts["admin_role"] in roles:
        return Principal(tenant=tenant, role="tenant-admin", subject=subject)
    catalogs: set[str] = set()
    for name, cats in opts["catalog_roles"].items():
        if name in granted:
            catalogs.update(str(c) for c in cats)
    if catalogs:
        return Principal(tenant=tenant, role="catalog-admin", catalogs=frozenset(catalogs), subject=subject)
    if opts["platform_role"] in roles:
        return Principal(tenant=tenant, role="platform", subject=subject)
    return Principal(tenant=tenant, role=NO_ROLE, subject=subject)
