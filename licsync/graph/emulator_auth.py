"""The emulator's identity side: app registrations, the token endpoint, bearer checks, JWKS.

It answers like Entra ID where a client can tell the difference: ``invalid_client`` with an
AADSTS code for a wrong or revoked credential, client assertions verified against the
registered certificate (``x5t`` or ``x5t#S256``, RS256/PS256, ``aud`` = token endpoint,
``iss`` = ``sub`` = client id), and 401 ``InvalidAuthenticationToken`` for a bad bearer.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

DEFAULT_ROLES = frozenset({"User.Read.All", "AuditLog.Read.All", "Mail.Send"})
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class App:
    """One app registration: a secret and/or certificates, and the application permissions granted."""

    client_id: str
    secret: str | None = None
    thumbprints: dict[str, Any] = field(default_factory=dict)  # b64url sha1/sha256 -> public key
    roles: frozenset[str] = DEFAULT_ROLES
    generation: int = 0  # bumped by revoke: tokens issued before are refused
    revoked: bool = False

    def add_certificate(self, certificate_pem: str | bytes) -> None:
        pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----") :])
        for algo in (hashes.SHA1(), hashes.SHA256()):  # noqa: S303 - x5t is SHA-1 by definition
            self.thumbprints[_b64(cert.fingerprint(algo))] = cert.public_key()


@dataclass(frozen=True, slots=True)
class AccessToken:
    tenant_id: str
    client_id: str
    expires_at: datetime
    generation: int


class AuthError(Exception):
    """An error answer: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("error") or body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _aad_error(status: int, error: str, code: int, message: str) -> AuthError:
    trace = str(uuid.uuid4())
    return AuthError(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {trace}",
            "error_codes": [code],
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
    )


def graph_error(status: int, code: str, message: str) -> AuthError:
    return AuthError(
        status, {"error": {"code": code, "message": message, "innerError": {"request-id": str(uuid.uuid4())}}}
    )


class TokenService:
    """Apps and tokens of one emulated tenant. Access tokens live in a registry shared by all
    tenants of a server, so a Graph request finds its tenant from its bearer token alone."""

    def __init__(self, tenant_id: str, clock: Callable[[], datetime], registry: dict[str, AccessToken]) -> None:
        self.tenant_id = tenant_id
        self.clock = clock
        self.token_lifetime = 3599  # seconds; MSAL will not serve a token under 5 minutes from its cache
        self.apps: dict[str, App] = {}
        self._registry = registry
        self._lock = threading.Lock()
        self._down = 0  # token requests still to fail with 503; -1 = until told otherwise

    def add_app(
        self,
        client_id: str,
        secret: str | None = None,
        certificate_pem: str | bytes | None = None,
        roles: frozenset[str] | set[str] | list[str] = DEFAULT_ROLES,
    ) -> App:
        with self._lock:
            app = App(client_id, secret=secret, roles=frozenset(roles))
            if certificate_pem:
                app.add_certificate(certificate_pem)
            self.apps[client_id] = app
            return app

    def revoke_secret(self, client_id: str | None = None) -> None:
        """The credential stops working and every token already issued to the app is refused."""
        with self._lock:
            for app in self.apps.values():
                if client_id is None or app.client_id == client_id:
                    app.revoked = True
                    app.generation += 1

    def token_endpoint_down(self, n: int | bool = True) -> None:
        """Fail the next ``n`` token requests with 503 (``True``: until ``False``)."""
        with self._lock:
            self._down = -1 if n is True else int(n)

    def _take_down(self) -> bool:
        with self._lock:
            if self._down == 0:
                return False
            if self._down > 0:
                self._down -= 1
            return True

    def issue(self, form: Mapping[str, str], token_url: str) -> dict[str, Any]:
        """Answer a client-credentials token request, or raise AuthError."""
        if self._take_down():
            raise AuthError(503, {"error": "temporarily_unavailable"}, {"Retry-After": "0"})
        if form.get("grant_type") != "client_credentials":
            raise _aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            raise _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        scope = form.get("scope", "")
        if not any(s.endswith("/.default") for s in scope.split()):
            raise _aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        if "client_assertion" in form:
            self._check_assertion(app, form, token_url)
        elif "client_secret" in form:
            if app.secret is None or not hmac.compare_digest(form["client_secret"], app.secret):
                raise _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        else:
            raise _aad_error(
                400, "invalid_client", 7000218, "The request body must contain client_assertion or client_secret."
            )
        if app.revoked:
            raise _aad_error(
                401, "invalid_client", 7000222, f"The provided client secret keys for app '{client_id}' are expired."
            )
        expires = self.clock() + timedelta(seconds=self.token_lifetime)
        # JWT-shaped like Entra's (clients read ``tid``; only the emulator decides validity, by lookup).
        claims = {"aud": "https://graph.microsoft.com", "tid": self.tenant_id, "appid": client_id,
                  "exp": int(expires.timestamp()), "jti": secrets.token_urlsafe(16)}
        token = ".".join(_b64(json.dumps(part).encode()) for part in ({"typ": "JWT", "alg": "none"}, claims))
        token += "." + secrets.token_urlsafe(32)
        with self._lock:
            self._registry[token] = AccessToken(self.tenant_id, client_id, expires, app.generation)
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    def _check_assertion(self, app: App, form: Mapping[str, str], token_url: str) -> None:
        def bad(why: str) -> AuthError:
            return _aad_error(401, "invalid_client", 700027, f"Client assertion failed signature validation: {why}")

        if form.get("client_assertion_type") != JWT_BEARER:
            raise _aad_error(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise bad("not a JWT") from None
        thumb = (header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        key = app.thumbprints.get(thumb)
        if key is None:
            raise _aad_error(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature: key was not found (thumbprint not registered).",
            )
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256", "PS256"],
                audience=token_url,
                issuer=app.client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
                leeway=300,
            )
        except jwt.InvalidTokenError as exc:
            raise bad(type(exc).__name__) from None
        if claims.get("sub") != app.client_id:
            raise bad("sub is not the client id")

    def authenticate(self, authorization: str | None, required_role: str) -> AccessToken:
        """Check a Graph request's bearer token; raise AuthError (401/403) like Graph does."""
        if not authorization or not authorization.startswith("Bearer "):
            raise graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = self._registry.get(authorization[7:].strip())
        if token is None or token.tenant_id != self.tenant_id:
            raise graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        app = self.apps.get(token.client_id)
        if app is None or app.generation != token.generation:
            raise graph_error(401, "InvalidAuthenticationToken", "Access token has been revoked.")
        if token.expires_at <= self.clock():
            raise graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if required_role not in app.roles:
            raise graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        return token


class SigningKey:
    """An RS256 key the emulator signs user tokens with, published as JWKS (for API auth tests)."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _b64(secrets.token_bytes(12))

    def jwks(self) -> dict[str, Any]:
        jwk = dict(RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
