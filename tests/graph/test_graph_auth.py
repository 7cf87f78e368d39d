"""TokenSource and the kiota token provider against the emulator's token endpoint (real MSAL)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from licsync.errors import ConfigError, PermanentError, TransientError
from licsync.graph.auth import GraphTokenProvider, TokenSource, graph_scope
from licsync.graph.tls import make_client_certificate
from tests.graph.conftest import GraphEnv


def test_scope_is_the_graph_resource() -> None:
    assert graph_scope("https://graph.microsoft.com/v1.0") == "https://graph.microsoft.com/.default"
    assert graph_scope("https://127.0.0.1:8443/v1.0") == "https://127.0.0.1:8443/.default"


def test_secret_token_and_cache(graph_env: GraphEnv) -> None:
    source = TokenSource(graph_env.config())
    try:
        first = source.get_token()
        assert first and graph_env.tenant.stats["token"] == 1
        assert source.get_token() == first  # served from MSAL's cache
        assert graph_env.tenant.stats["token"] == 1 and source.token_requests == 1
        assert graph_env.tenant.stats["openid"] == 1  # discovery once, no instance discovery
        source.invalidate()
        assert source.get_token() != first and graph_env.tenant.stats["token"] == 2
    finally:
        source.close()


def test_secret_from_env_reference(graph_env: GraphEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICSYNC_TEST_GRAPH_SECRET", graph_env.tenant.client_secret)
    source = TokenSource(graph_env.config(client_secret="env:LICSYNC_TEST_GRAPH_SECRET"))
    try:
        assert source.get_token()
    finally:
        source.close()


@pytest.mark.parametrize("password", [None, "s3cret-pass"])
def test_certificate_credential(graph_env: GraphEnv, tmp_path: Path, password: str | None) -> None:
    cert = make_client_certificate(tmp_path, password=password)
    graph_env.tenant.add_app("cert-app", certificate_pem=cert.certificate_pem)
    overrides: dict = {"client_id": "cert-app", "client_secret": None, "certificate": cert.pem_path}
    if password:
        (tmp_path / "pw").write_text(password)
        overrides["certificate_password"] = f"file:{tmp_path / 'pw'}"
    source = TokenSource(graph_env.config(**overrides))
    try:
        assert source.get_token()
    finally:
        source.close()


def test_unregistered_certificate_is_permanent(graph_env: GraphEnv, tmp_path: Path) -> None:
    registered = make_client_certificate(tmp_path / "a")
    other = make_client_certificate(tmp_path / "b")
    graph_env.tenant.add_app("cert-app", certificate_pem=registered.certificate_pem)
    source = TokenSource(graph_env.config(client_id="cert-app", client_secret=None, certificate=other.pem_path))
    try:
        with pytest.raises(PermanentError, match="invalid_client") as info:
            source.get_token()
        assert other.thumbprint_sha1 in str(info.value)  # names the certificate an admin must check
    finally:
        source.close()


def test_wrong_certificate_password_is_a_config_error(graph_env: GraphEnv, tmp_path: Path) -> None:
    cert = make_client_certificate(tmp_path, password="right")
    (tmp_path / "pw").write_text("Not-The-Pa55word")
    source = TokenSource(
        graph_env.config(
            client_id="x", client_secret=None, certificate=cert.pem_path, certificate_password=f"file:{tmp_path / 'pw'}"
        )
    )
    with pytest.raises(ConfigError, match="cannot load the private key") as info:
        source.get_token()
    assert "Not-The-Pa55word" not in str(info.value)
    source.close()


def test_wrong_secret_is_permanent_and_never_echoed(graph_env: GraphEnv, tmp_path: Path) -> None:
    secret = "Wr0ng~S3cret-value-0123456789"
    (tmp_path / "secret").write_text(secret)
    source = TokenSource(graph_env.config(client_secret=f"file:{tmp_path / 'secret'}"))
    try:
        with pytest.raises(PermanentError, match="invalid_client") as info:
            source.get_token()
    finally:
        source.close()
    message = str(info.value)
    assert secret not in message and graph_env.tenant.client_secret not in message
    assert f"file:{tmp_path / 'secret'}" in message  # the reference helps; the value never appears


def test_revoked_secret_is_permanent(graph_env: GraphEnv) -> None:
    graph_env.tenant.revoke_secret()
    source = TokenSource(graph_env.config())
    try:
        with pytest.raises(PermanentError, match="expired or revoked"):
            source.get_token()
    finally:
        source.close()


def test_token_endpoint_down_is_transient_then_recovers(graph_env: GraphEnv) -> None:
    graph_env.tenant.token_endpoint_down(1)
    source = TokenSource(graph_env.config())
    try:
        with pytest.raises(TransientError, match="token endpoint"):
            source.get_token()
        assert source.get_token()
    finally:
        source.close()


def test_unreachable_authority_is_transient(graph_env: GraphEnv) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = TokenSource(graph_env.config(authority=f"https://127.0.0.1:{port}"))
    with pytest.raises(TransientError, match="cannot reach"):
        source.get_token()
    source.close()


def test_unknown_tenant_is_permanent(graph_env: GraphEnv) -> None:
    source = TokenSource(graph_env.config(tenant_id="00000000-0000-0000-0000-000000000000"))
    with pytest.raises(PermanentError) as exc:
        source.get_token()
    source.close()
    # one clear line naming the key, not MSAL's truncated "Unable to get authority configuration…"
    assert "does not know tenant_id '00000000-0000-0000-0000-000000000000' (check tenant_id" in str(exc.value)
    assert "Unable to get authority" not in str(exc.value) and "\n" not in str(exc.value)


def test_provider_refuses_foreign_hosts(graph_env: GraphEnv) -> None:
    config = graph_env.config()
    source = TokenSource(config)
    provider = GraphTokenProvider(source, config.graph_url)
    try:
        assert provider.get_allowed_hosts_validator().get_allowed_hosts() == ["127.0.0.1"]
        token = asyncio.run(provider.get_authorization_token(config.graph_url + "/users"))
        assert token
        port = int(config.graph_url.split(":")[2].split("/")[0])
        for url in (
            "https://evil.example/v1.0/users",
            config.graph_url.replace("https:", "http:"),
            config.graph_url.replace(f":{port}/", f":{port + 1}/"),
        ):
            with pytest.raises(PermanentError, match="refusing"):
                asyncio.run(provider.get_authorization_token(url))
    finally:
        source.close()


def test_revoked_access_token_is_refused_by_graph(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(300, seed=1)  # two pages: the second one meets the 401
    client = graph_env.client()

    async def go() -> None:
        try:
            async for _ in client.delta_pages(None):
                graph_env.tenant.revoke_secret()  # the token in hand stops working mid-round
        finally:
            await client.aclose()

    with pytest.raises(PermanentError, match="invalid_client"):
        asyncio.run(go())
    assert client.stats.retries == 1  # one fresh-token attempt after the 401, then the real cause


def test_expired_access_token_is_renewed(graph_server: object, graph_env: GraphEnv) -> None:
    from tests.graph.test_graph_client import ids

    graph_env.tenant.directory.add_users(450, seed=2)
    client = graph_env.client()

    async def go() -> list:
        try:
            pages = []
            async for page in client.delta_pages(None):
                pages.append(page)
                if len(pages) == 1:
                    graph_server.app.advance(7200)  # type: ignore[attr-defined]
            return pages
        finally:
            await client.aclose()
            graph_server.app.advance(-7200)  # type: ignore[attr-defined]

    pages = asyncio.run(go())
    assert len(ids(pages)) == 450 and graph_env.tenant.stats["token"] == 2


def test_requests_without_a_token_are_refused(graph_server: object, graph_env: GraphEnv) -> None:
    import httpx

    from licsync.graph.tls import client_ssl_context

    config = graph_env.config()
    with httpx.Client(verify=client_ssl_context(config.ca_bundle)) as http:
        r = http.get(config.graph_url + "/users/delta")
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert graph_server.app.stats["without_authorization_header"] >= 1  # type: ignore[attr-defined]
