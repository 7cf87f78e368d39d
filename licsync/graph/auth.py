"""App-only tokens for Microsoft Graph through MSAL, and the kiota provider that hands them out.

MSAL reports most failures as an error dict rather than an exception, and a few as exceptions
(connection errors, 5xx, a failed authority discovery). Both are turned into licsync's typed
errors here, so the caller learns only "fix the credential" (PermanentError) or "try again
later" (TransientError) — and never sees the secret or a token in a message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator

from licsync.config import TenantConfig
from licsync.errors import ConfigError, PermanentError, TransientError, truncate
from licsync.graph import tls

# MSAL error codes that mean "a person must fix the app registration or the configuration".
_PERMANENT_CODES = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "invalid_request",
        "invalid_grant",
        "invalid_resource",
        "access_denied",
        "consent_required",
    }
)
_TRANSIENT_CODES = frozenset({"temporarily_unavailable", "server_error", "service_unavailable"})
_PEM_KEY = re.compile(rb"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.+?-----END \1-----", re.S)
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def graph_scope(graph_url: str) -> str:
    """``https://graph.microsoft.com/v1.0`` -> ``https://graph.microsoft.com/.default``."""
    parts = urlsplit(graph_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def load_certificate_credential(path: Path, password: str | None) -> dict[str, Any]:
    """Read a PEM holding the private key and certificate into MSAL's credential dict.

    The key is decrypted here so that a wrong password is a ConfigError at start, not an MSAL
    stack trace at the first sync. Passing ``public_certificate`` (and no ``thumbprint``) lets
    MSAL >= 1.35 sign with PS256 and the SHA-256 thumbprint (``x5t#S256``), which Entra ID
    prefers over the deprecated SHA-1 ``x5t`` path.
    """
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"certificate {path}: cannot read ({exc.strerror})") from None
    key_block = _PEM_KEY.search(pem)
    cert_block = _PEM_CERT.search(pem)
    if key_block is None or cert_block is None:
        raise ConfigError(f"certificate {path}: needs both the private key and the certificate in PEM")
    try:
        cert = x509.load_pem_x509_certificate(cert_block.group(0))
    except ValueError:
        raise ConfigError(f"certificate {path}: the certificate is not valid PEM") from None
    try:
        key = serialization.load_pem_private_key(key_block.group(0), password.encode() if password else None)
    except (ValueError, TypeError):
        # Never echo the password; "wrong or missing" covers both TypeError and ValueError cases.
        raise ConfigError(
            f"certificate {path}: cannot load the private key (wrong or missing certificate_password?)"
        ) from None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "private_key": key_pem.decode("ascii"),
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }


def certificate_thumbprint(path: Path) -> str:
    """SHA-1 thumbprint (hex, upper case) as the Entra portal shows it, for messages."""
    block = _PEM_CERT.search(path.read_bytes())
    if block is None:
        raise ValueError("no certificate in PEM")
    cert = x509.load_pem_x509_certificate(block.group(0))
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier, not security


def token_tenant_id(token: str) -> str | None:
    """The ``tid`` claim of a Graph access token (a JWT), lower case; None when it carries none.

    Read, not verified: the token came from the configured tenant's token endpoint over verified
    TLS, and Graph itself verifies it. licsync reads it to know which tenant the token is *for*
    (SPEC §2: a lease serves only that tenant).
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    return tid.lower() if isinstance(tid, str) and tid else None


class TokenSource:
    """Client-credentials tokens for one tenant, cached by MSAL; safe to share across threads.

    The MSAL application is built on first use, not in ``__init__``: building it performs the
    authority discovery request, and a daemon must start even while the login host is down.
    """

    def __init__(self, tenant: TenantConfig) -> None:
        self._tenant = tenant
        self._scopes = [graph_scope(tenant.graph_url)]
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._session: requests.Session | None = None
        self._cache = msal.SerializableTokenCache()
        self.token_requests = 0  # calls that missed the cache; observability and tests

    @property
    def scopes(self) -> list[str]:
        return list(self._scopes)

    def _credential(self) -> str | dict[str, Any]:
        t = self._tenant
        if t.client_secret is not None:
            return t.client_secret.resolve()
        assert t.certificate is not None  # TenantConfig guarantees one of the two
        password = t.certificate_password.resolve() if t.certificate_password is not None else None
        return load_certificate_credential(t.certificate, password)

    def _describe_credential(self) -> str:
        t = self._tenant
        if t.client_secret is not None:
            return f"client secret ({t.client_secret})"  # the reference, never the value
        assert t.certificate is not None
        try:
            return f"certificate {t.certificate} (thumbprint {certificate_thumbprint(t.certificate)})"
        except (OSError, ValueError):
            return f"certificate {t.certificate}"

    def _build_app(self) -> msal.ConfidentialClientApplication:
        t = self._tenant
        authority = f"{t.authority}/{t.tenant_id}"
        self._session = self._session or tls.requests_session(t.ca_bundle, timeout=t.timeout.total_seconds())
        try:
            return msal.ConfidentialClientApplication(
                t.client_id,
                client_credential=self._credential(),
                authority=authority,
                instance_discovery=False,
                http_client=self._session,
                token_cache=self._cache,
            )
        except requests.exceptions.SSLError:
            raise PermanentError(
                f"tenant {t.name}: TLS verification of {t.authority} failed; set ca_bundle if it uses a private CA"
            ) from None
        except requests.RequestException as exc:
            raise TransientError(
                f"tenant {t.name}: cannot reach the authority {t.authority} ({type(exc).__name__})"
            ) from None
        except msal.exceptions.MsalServiceError as exc:  # 5xx during discovery
            raise TransientError(f"tenant {t.name}: authority discovery failed: {truncate(str(exc))}") from None
        except ValueError as exc:  # 4xx from discovery (unknown tenant), or an authority MSAL refuses
            if "Unable to get authority configuration" in str(exc):
                raise PermanentError(
                    f"tenant {t.name}: {t.authority} does not know tenant_id {t.tenant_id!r} (check tenant_id: "
                    "the Directory (tenant) ID on the app registration's Overview page; and authority for a "
                    "sovereign cloud)"
                ) from None
            raise PermanentError(
                f"tenant {t.name}: MSAL rejected the configuration ({authority}): {truncate(str(exc), 200)}"
            ) from None

    def get_token(self) -> str:
        """An access token for Graph: from the cache when still valid, else from the token endpoint."""
        with self._lock:
            if self._app is None:
                self._app = self._build_app()
            app = self._app
            try:
                # acquire_token_for_client looks in the cache first (MSAL >= 1.23).
                result = app.acquire_token_for_client(scopes=self._scopes)
            except requests.exceptions.SSLError:
                raise PermanentError(
                    f"tenant {self._tenant.name}: TLS verification of the token endpoint failed; "
                    "set ca_bundle if it uses a private CA"
                ) from None
            except requests.RequestException as exc:
                raise TransientError(
                    f"tenant {self._tenant.name}: token endpoint unreachable ({type(exc).__name__})"
                ) from None
            except msal.exceptions.MsalServiceError as exc:  # HTTP 5xx from the token endpoint
                raise TransientError(
                    f"tenant {self._tenant.name}: token endpoint failed: {truncate(str(exc))}"
                ) from None
            except ValueError:  # a body that is not JSON: a proxy or gateway page, most likely
                raise TransientError(f"tenant {self._tenant.name}: token endpoint answered non-JSON") from None
            if isinstance(result, dict) and result.get("token_source") != "cache":
                self.token_requests += 1
        token = result.get("access_token") if isinstance(result, dict) else None
        if token:
            return str(token)
        raise self._error_from(result if isinstance(result, dict) else {})

    def _error_from(self, result: dict[str, Any]) -> Exception:
        code = str(result.get("error") or "unknown_error")
        # error_description carries AADSTS codes and a trace id, never the secret; still truncate.
        desc = truncate(str(result.get("error_description") or ""), 240)
        name = self._tenant.name
        if code == "invalid_client":
            return PermanentError(
                f"tenant {name}: the token endpoint rejected the {self._describe_credential()} of app "
                f"{self._tenant.client_id} (invalid_client: wrong, expired or revoked credential). {desc}"
            )
        if code in _TRANSIENT_CODES:
            return TransientError(f"tenant {name}: token endpoint: {code}. {desc}")
        if code in _PERMANENT_CODES:
            return PermanentError(f"tenant {name}: token request refused ({code}). {desc}")
        return TransientError(f"tenant {name}: token request failed ({code}). {desc}")

    def invalidate(self) -> None:
        """Forget cached access tokens, e.g. after Graph answered 401 to one of them."""
        with self._lock:
            for entry in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                self._cache.remove_at(entry)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            self._app = None


class GraphTokenProvider(AccessTokenProvider):
    """kiota ``AccessTokenProvider`` that only ever authorises the configured Graph origin.

    kiota's ``BaseBearerTokenAuthenticationProvider`` silently sends a request *without* an
    Authorization header when the provider returns an empty token for a host it does not allow.
    That hides a misconfiguration behind a confusing 401, so another scheme, host or port is an
    error here instead (sending the token there would hand it to someone else).
    """

    def __init__(self, source: TokenSource, graph_url: str) -> None:
        self._source = source
        parts = urlsplit(graph_url)
        self._origin = (parts.scheme, parts.port)
        self._validator = AllowedHostsValidator([parts.hostname or ""])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        parts = urlsplit(uri)
        if (parts.scheme, parts.port) != self._origin or not self._validator.is_url_host_valid(uri):
            raise PermanentError(
                f"refusing to send the Graph token to {parts.scheme}://{parts.netloc}: not the configured "
                "graph_url origin"
            )
        return await asyncio.to_thread(self._source.get_token)

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator
