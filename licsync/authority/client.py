"""The deployment's side of the wire to the activation authority (httpx, https with ``ca_bundle``).

Errors by what helps: the authority unreachable, timing out or answering 5xx is a
``TransientError`` (the lease holds meanwhile); a refusal is ``service.Refused`` with the
authority's stable code (``moved``, ``revoked``, …); anything else it says is an ``InputError``.
Nothing secret is sent but the key (at activation) and the lease; both are bearer credentials
for *this* subscription only and never logged.
"""

from __future__ import annotations

from typing import Any

import httpx

from licsync.authority.service import Refused
from licsync.config import AuthorityConfig
from licsync.errors import ConfigError, InputError, TransientError, truncate
from licsync.graph import tls


class AuthorityClient:
    def __init__(self, cfg: AuthorityConfig) -> None:
        if not cfg.url:
            raise ConfigError("[authority] url is not set")
        self._url = cfg.url
        verify: Any = tls.client_ssl_context(cfg.ca_bundle) if cfg.url.startswith("https") else False
        self._http = httpx.Client(verify=verify, timeout=cfg.timeout.total_seconds(), trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AuthorityClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            r = self._http.post(self._url + path, json=body)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ConfigError(f"activation authority {self._url}: TLS verification failed; set [authority] "
                                  "ca_bundle if it uses a private CA") from None
            raise TransientError(f"activation authority {self._url} unreachable ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"activation authority {self._url}: {type(exc).__name__}") from None
        if r.status_code >= 500 or r.status_code == 429:
            raise TransientError(f"activation authority answered {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            raise TransientError(f"activation authority answered {r.status_code} without JSON") from None
        if r.status_code >= 400:
            code = str(data.get("error") or "bad_request") if isinstance(data, dict) else "bad_request"
            detail = truncate(str(data.get("detail") if isinstance(data, dict) else data), 300)
            if code in ("moved", "revoked", "unknown_subscription", "tenant_bound", "stale_key"):
                raise Refused(code, f"activation authority refused ({code}): {detail}", r.status_code)
            raise InputError(f"activation authority refused the request: {detail}")
        if not isinstance(data, dict) or (not isinstance(data.get("lease"), str) and path != "/v1/deactivate"):
            raise TransientError("activation authority answered without a lease")
        return data

    def activate(self, key: str, tenant_id: str, deployment_id: str) -> dict[str, Any]:
        return self._post("/v1/activate", {"key": key, "tenant_id": tenant_id, "deployment_id": deployment_id})

    def renew(self, lease: str) -> dict[str, Any]:
        return self._post("/v1/renew", {"lease": lease})

    def deactivate(self, lease: str) -> dict[str, Any]:
        return self._post("/v1/deactivate", {"lease": lease})
