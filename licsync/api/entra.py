"""Microsoft Entra ID bearer tokens for the API: an alternative to licsync's own tokens.

A tenant opts in by naming the audience of its API app registration. Until the configuration
model carries these keys they are read with ``getattr`` (proposed ``[[tenant]]`` keys):

* ``api_audience`` — the ``aud`` to accept (the API app's client id or ``api://…`` URI); enables Entra ID;
* ``api_admin_role`` — app role granting tenant-admin (default ``LicSync.Admin``);
* ``api_platform_role`` — app role granting access decisions (default ``LicSync.Platform``);
* ``api_catalog_admin_roles`` — ``{app role or group object id: [catalog ids]}`` granting catalog-admin;
* ``api_issuer`` — an extra accepted issuer (v1 tokens, unusual clouds).

Validation: RS256 only (never ``none`` or HMAC with a public key as secret), ``iss`` =
``{authority}/{tenant_id}/v2.0``, ``aud``, ``exp``/``nbf`` with 60 s leeway, and ``tid`` must be the
tenant's. Signing keys come from ``{authority}/{tenant_id}/discovery/v2.0/keys`` over TLS that
trusts the tenant's ``ca_bundle`` (environment variables never decide), cached for an hour and
re-read when a token names an unknown key id (Entra rotates keys), at most every ``refetch_after``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from licsync.api.auth import ApiError
from licsync.config import Settings, TenantConfig
from licsync.errors import truncate
from licsync.log import get_logger
from licsync.tokens import Principal

DEFAULT_ADMIN_ROLE = "LicSync.Admin"
DEFAULT_PLATFORM_ROLE = "LicSync.Platform"
NO_ROLE = "none"  # a valid token that grants nothing: 403 everywhere


@dataclass
class _Keys:
    fetched: float = 0.0
    by_kid: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def options_of(tenant: TenantConfig) -> dict[str, Any] | None:
    """The Entra ID API options of a tenant, or None when it has not enabled them."""
    audience = getattr(tenant, "api_audience", None)
    if not audience:
        return None
    return {
        "audience": audience,
        "admin_role": getattr(tenant, "api_admin_role", None) or DEFAULT_ADMIN_ROLE,
        "platform_role": getattr(tenant, "api_platform_role", None) or DEFAULT_PLATFORM_ROLE,
        "catalog_roles": dict(getattr(tenant, "api_catalog_admin_roles", None) or {}),
        "issuers": [f"{tenant.authority}/{tenant.tenant_id}/v2.0"]
        + ([str(getattr(tenant, "api_issuer", ""))] if getattr(tenant, "api_issuer", None) else []),
    }


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
        self._keys: dict[str, _Keys] = {t.name: _Keys() for t in self.tenants.values()}
        self.log = get_logger(component="api.entra")

    @property
    def enabled(self) -> bool:
        return bool(self.tenants)

    def jwks_url(self, tenant: TenantConfig) -> str:
        return f"{tenant.authority}/{tenant.tenant_id}/discovery/v2.0/keys"

    def _fetch(self, tenant: TenantConfig) -> dict[str, Any]:
        from licsync.graph.tls import client_ssl_context

        with httpx.Client(verify=client_ssl_context(tenant.ca_bundle), trust_env=False, timeout=5.0) as client:
            resp = client.get(self.jwks_url(tenant))
            resp.raise_for_status()
            doc = resp.json()
        keys: dict[str, Any] = {}
        for jwk in doc.get("keys", []):
            if jwk.get("kty") != "RSA" or not jwk.get("kid") or jwk.get("use", "sig") != "sig":
                continue
            keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        return keys

    def _key(self, tenant: TenantConfig, kid: str) -> Any:
        cache = self._keys[tenant.name]
        now = self.clock()
        key = cache.by_kid.get(kid)
        if key is not None and now - cache.fetched < self.ttl:
            return key
        with cache.lock:
            key = cache.by_kid.get(kid)
            fresh = now - cache.fetched < self.ttl
            if key is not None and fresh:
                return key
            if cache.fetched and now - cache.fetched < self.refetch_after and fresh:
                return None  # unknown kid, keys read moments ago: do not let tokens hammer the IdP
            try:
                cache.by_kid = self._fetch(tenant)
                cache.fetched = now
            except (httpx.HTTPError, ValueError, jwt.PyJWKError) as exc:
                self.log.warning("jwks_fetch_failed", tenant=tenant.name, error=truncate(str(exc)))
                if key is not None:
                    return key  # keep working on the keys we had
                raise ApiError(503, "cannot verify Entra ID tokens right now (signing keys unavailable)") from None
            return cache.by_kid.get(kid)

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
        key = self._key(tenant, str(header["kid"]))
        if key is None:
            return None
        try:
            claims = jwt.decode(
                raw,
                key,
                algorithms=["RS256"],
                audience=opts["audience"],
                issuer=opts["issuers"],
                leeway=60,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            self.log.info("entra_token_rejected", tenant=tenant.name, why=type(exc).__name__)
            return None
        if str(claims.get("tid", "")).lower() != tenant.tenant_id.lower():
            return None
        return principal_from_claims(tenant.name, claims, opts)


def principal_from_claims(tenant: str, claims: dict[str, Any], opts: dict[str, Any]) -> Principal:
    """Rights from app roles (``roles``) and group ids (``groups``): admin > catalog admin > platform."""
    roles = {str(r) for r in claims.get("roles") or []}
    granted = roles | {str(g) for g in claims.get("groups") or []}
    subject = str(claims.get("preferred_username") or claims.get("upn") or claims.get("oid") or claims.get("azp")
                  or "entra")
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
