"""Entra ID bearer tokens: RS256 JWTs checked against the tenant's OIDC discovery and JWKS, served
over loopback TLS; v1 tokens (App ID URI audience, sts.windows.net issuer) and v2 tokens (client id
audience, ``{authority}/{tid}/v2.0`` issuer), each with its own audience and issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from licsync.api.entra import EntraVerifier
from licsync.config import Settings, TenantConfig
from licsync.graph.tls import make_test_pki
from tests.api.conftest import Env, bearer
from tests.api.seed import CONTOSO_ID, FABRIKAM_ID, settings_data

T = "/api/v1/tenants"
AUD = "api://licsync-contoso"  # App ID URI: the audience of v1 tokens
CLIENT_ID = "5f1a2b3c-0000-4000-8000-00000000c11d"  # the API app's client id: the audience of v2 tokens
V1_ISSUER = f"https://sts.windows.net/{CONTOSO_ID}/"


class Jwks:
    """Entra's discovery documents (v2 and v1) and a JWKS endpoint over HTTPS on 127.0.0.1."""

    def __init__(self, pki_dir: Path) -> None:
        self.keys: dict[str, Any] = {}
        self.hits = 0
        pki = make_test_pki(pki_dir)
        self.ca = pki.ca_cert
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                root = f"{outer.authority}/{CONTOSO_ID}"
                if self.path == f"/{CONTOSO_ID}/v2.0/.well-known/openid-configuration":
                    doc: dict[str, Any] = {"issuer": f"{root}/v2.0", "jwks_uri": f"{root}/discovery/v2.0/keys"}
                elif self.path == f"/{CONTOSO_ID}/.well-known/openid-configuration":
                    doc = {"issuer": V1_ISSUER, "jwks_uri": f"{root}/discovery/keys"}
                elif self.path == f"/{CONTOSO_ID}/discovery/v2.0/keys":
                    outer.hits += 1
                    doc = {"keys": [outer.jwk(kid, k) for kid, k in outer.keys.items()]}
                else:
                    self.send_error(404)
                    return
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.authority = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return d | {"kid": kid, "use": "sig", "alg": "RS256"}

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = key
        return key

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jwks]:
    server = Jwks(tmp_path_factory.mktemp("pki"))
    server.add_key("k1")
    yield server
    server.close()


def entra_settings(jwks: Jwks, *, ca: bool = True) -> Settings:
    data = settings_data()
    contoso = data["tenant"][0] | {
        "authority": jwks.authority, "ca_bundle": str(jwks.ca) if ca else None, "api_audience": AUD,
        "api_client_id": CLIENT_ID,
        "api_catalog_admin_roles": {"Catalog.Sales": ["cat-a"], "5b0c6a4e-group-safety": ["cat-b"]},
    }
    data["tenant"] = [TenantConfig.model_validate(contoso), TenantConfig.model_validate(data["tenant"][1])]
    return Settings.model_validate(data)


def token(jwks: Jwks, kid: str = "k1", key: Any = None, alg: str = "RS256", **over: Any) -> str:
    """A v2 access token (what an app registration with accessTokenAcceptedVersion = 2 issues)."""
    now = int(time.time())
    claims = {"ver": "2.0", "iss": f"{jwks.authority}/{CONTOSO_ID}/v2.0", "aud": CLIENT_ID, "tid": CONTOSO_ID,
              "iat": now,
              "nbf": now - 5, "exp": now + 600, "oid": "user-oid", "preferred_username": "it@contoso.example"}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key if key is not None else jwks.keys[kid], algorithm=alg, headers={"kid": kid})


def hs256_with_public_key(jwks: Jwks, claims: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC-sign with the (public) RSA key as the secret."""
    from cryptography.hazmat.primitives import serialization

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    secret = jwks.keys["k1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    signing = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode()) + "." + b64(
        json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())


@pytest.fixture
def entra(fresh: Env, jwks: Jwks) -> tuple[Env, Any]:
    s = entra_settings(jwks)
    return fresh, fresh.make_client(settings=s, entra=EntraVerifier(s, refetch_after=0))


def test_roles_and_groups_grant_scopes(entra: tuple[Env, Any], jwks: Jwks) -> None:
    _env, c = entra
    admin = bearer(token(jwks, roles=["LicSync.Admin"]))
    assert c.get(f"{T}/contoso/status", headers=admin).status_code == 200
    assert c.get(f"{T}/fabrikam/status", headers=admin).status_code == 403
    sales = bearer(token(jwks, roles=["Catalog.Sales"]))
    assert c.get(f"{T}/contoso/catalogs/cat-a/status", headers=sales).status_code == 200
    assert c.get(f"{T}/contoso/catalogs/cat-b/status", headers=sales).status_code == 403
    assert c.get(f"{T}/contoso/status", headers=sales).status_code == 403
    safety = bearer(token(jwks, groups=["5b0c6a4e-group-safety"]))
    assert c.get(f"{T}/contoso/catalogs/cat-b/status", headers=safety).status_code == 200
    platform = bearer(token(jwks, roles=["LicSync.Platform"]))
    assert c.get(f"{T}/contoso/access/u-ann", headers=platform).json()["licensed"] is True
    assert c.get(f"{T}/contoso/status", headers=platform).status_code == 403
    nothing = bearer(token(jwks, roles=["Something.Else"]))
    assert c.get(f"{T}/contoso/status", headers=nothing).status_code == 403
    me = c.get("/api/v1/me", headers=sales).json()
    assert me == {"tenant": "contoso", "role": "catalog-admin", "catalogs": ["cat-a"],
                  "subject": "it@contoso.example"}


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "tenant", "other_tenant", "signature", "hs256",
                                  "none", "unknown_kid", "garbage", "v1_with_client_id", "v2_with_app_id_uri",
                                  "v1_with_v2_issuer", "v1_other_tenant_issuer"])
def test_invalid_tokens_are_401(entra: tuple[Env, Any], jwks: Jwks, case: str) -> None:
    _env, c = entra
    roles = ["LicSync.Admin"]
    now = int(time.time())
    raw = {
        "expired": lambda: token(jwks, roles=roles, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "audience": lambda: token(jwks, roles=roles, aud="api://someone-else"),
        "issuer": lambda: token(jwks, roles=roles, iss="https://login.microsoftonline.com/evil/v2.0"),
        "tenant": lambda: token(jwks, roles=roles, tid=FABRIKAM_ID),
        "other_tenant": lambda: token(jwks, roles=roles, tid="33333333-3333-3333-3333-333333333333"),
        "signature": lambda: token(jwks, roles=roles, key=rsa.generate_private_key(public_exponent=65537,
                                                                                    key_size=2048)),
        "hs256": lambda: hs256_with_public_key(jwks, {"roles": roles, "tid": CONTOSO_ID, "aud": CLIENT_ID,
                                                      "exp": now + 600, "iss": f"{jwks.authority}/{CONTOSO_ID}/v2.0"}),
        "v1_with_client_id": lambda: token(jwks, roles=roles, ver="1.0", iss=V1_ISSUER),
        "v2_with_app_id_uri": lambda: token(jwks, roles=roles, aud=AUD),
        "v1_with_v2_issuer": lambda: token(jwks, roles=roles, ver="1.0", aud=AUD),
        "v1_other_tenant_issuer": lambda: token(jwks, roles=roles, ver="1.0", aud=AUD,
                                                iss=f"https://sts.windows.net/{FABRIKAM_ID}/"),
        "none": lambda: jwt.encode({"roles": roles, "tid": CONTOSO_ID, "aud": CLIENT_ID, "exp": now + 600}, None,
                                   algorithm="none", headers={"kid": "k1"}),
        "unknown_kid": lambda: token(jwks, kid="k-unknown", key=jwks.keys["k1"], roles=roles),
        "garbage": lambda: "aaa.bbb.ccc",
    }[case]()
    r = c.get(f"{T}/contoso/status", headers=bearer(raw))
    assert r.status_code == 401, r.text
    assert "invalid_token" in r.headers["WWW-Authenticate"]


def test_v1_tokens_with_the_app_id_uri_are_accepted(entra: tuple[Env, Any], jwks: Jwks) -> None:
    """A default app registration issues v1 tokens: sts.windows.net issuer, App ID URI audience."""
    _env, c = entra
    v1 = bearer(token(jwks, roles=["LicSync.Admin"], ver="1.0", iss=V1_ISSUER, aud=AUD, preferred_username=None,
                      upn="it@contoso.example"))
    assert c.get(f"{T}/contoso/status", headers=v1).status_code == 200
    assert c.get("/api/v1/me", headers=v1).json()["subject"] == "it@contoso.example"


def test_keys_are_cached_and_rotation_is_followed(entra: tuple[Env, Any], jwks: Jwks) -> None:
    _env, c = entra
    before = jwks.hits
    for _ in range(5):
        assert c.get(f"{T}/contoso/status", headers=bearer(token(jwks, roles=["LicSync.Admin"]))).status_code == 200
    assert jwks.hits == before + 1
    jwks.add_key("k2")
    try:
        r = c.get(f"{T}/contoso/status", headers=bearer(token(jwks, kid="k2", roles=["LicSync.Admin"])))
        assert r.status_code == 200 and jwks.hits == before + 2
    finally:
        del jwks.keys["k2"]


def test_ca_bundle_is_what_makes_the_jwks_trusted(fresh: Env, jwks: Jwks) -> None:
    s = entra_settings(jwks, ca=False)  # the environment's bundles must not decide
    c = fresh.make_client(settings=s, entra=EntraVerifier(s))
    r = c.get(f"{T}/contoso/status", headers=bearer(token(jwks, roles=["LicSync.Admin"])))
    assert r.status_code == 503 and "signing keys" in r.json()["error"]


def test_licsync_tokens_still_work_beside_entra(entra: tuple[Env, Any]) -> None:
    env, c = entra
    assert c.get(f"{T}/contoso/status", headers=bearer(env.tokens["admin"])).status_code == 200
