"""TLS: the generated PKI, and trust that the environment cannot override (SPEC §5)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from licsync.errors import PermanentError
from licsync.graph.auth import TokenSource
from licsync.graph.tls import client_ssl_context, make_client_certificate, make_test_pki
from tests.graph.conftest import GraphEnv

ENV_TRUST = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


def test_pki_has_the_loopback_names_and_is_reused(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path)
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert pki.server_key.stat().st_mode & 0o077 == 0
    before = pki.ca_cert.read_bytes()
    assert make_test_pki(tmp_path) == pki and pki.ca_cert.read_bytes() == before


def test_client_certificate(tmp_path: Path) -> None:
    cert = make_client_certificate(tmp_path)
    pem = cert.pem_path.read_text()
    assert "PRIVATE KEY" in pem and cert.certificate_pem in pem and "PRIVATE" not in cert.certificate_pem
    assert len(cert.thumbprint_sha1) == 40 and len(cert.thumbprint_sha256) == 64


def test_context_is_system_store_plus_bundle(
    graph_env: GraphEnv, monkeypatch: pytest.MonkeyPatch, other_ca: Path
) -> None:
    for var in ENV_TRUST:
        monkeypatch.setenv(var, str(other_ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(other_ca.parent))
    plain = client_ssl_context(None).cert_store_stats()["x509_ca"]
    assert plain > 10  # the system store, although SSL_CERT_FILE points at a one-CA bundle
    bundle = Path(graph_env.config().ca_bundle or "")
    assert client_ssl_context(bundle).cert_store_stats()["x509_ca"] == plain + 1


def test_ca_bundle_wins_over_the_environment(
    graph_env: GraphEnv, monkeypatch: pytest.MonkeyPatch, other_ca: Path
) -> None:
    for var in ENV_TRUST:
        monkeypatch.setenv(var, str(other_ca))  # a CA that did not sign the emulator
    graph_env.tenant.directory.add_users(3, seed=1)

    async def go() -> int:
        client = graph_env.client()
        try:
            return sum([len(p.rows) async for p in client.delta_pages(None)])
        finally:
            await client.aclose()

    assert asyncio.run(go()) == 3  # MSAL (requests) and Graph (httpx) both trusted ca_bundle


class _FixedToken:
    def get_token(self) -> str:
        return "not-needed"

    def invalidate(self) -> None: ...

    def close(self) -> None: ...


def test_environment_alone_grants_no_trust(graph_env: GraphEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from licsync.graph.client import GraphClient

    emulator_ca = graph_env.config().ca_bundle
    for var in ENV_TRUST:
        monkeypatch.setenv(var, str(emulator_ca))  # env names the right CA, the config names none
    config = graph_env.config(ca_bundle=None)
    source = TokenSource(config)
    with pytest.raises(PermanentError, match="TLS verification"):
        source.get_token()
    source.close()

    async def go() -> None:
        client = GraphClient(config, token_source=_FixedToken())  # type: ignore[arg-type]
        try:
            async for _ in client.delta_pages(None):
                pass
        finally:
            await client.aclose()

    with pytest.raises(PermanentError, match="TLS verification"):
        asyncio.run(go())
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=client_ssl_context(None)) as http:
        http.get(config.graph_url + "/users")
