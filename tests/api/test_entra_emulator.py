"""Entra ID tokens from the Graph emulator's issuer: discovery (v2 and v1 documents) and keys over
its loopback TLS, tokens signed with the key it publishes."""

from __future__ import annotations

from typing import Any

import pytest

from licsync.api.entra import EntraVerifier
from licsync.config import Settings
from tests.graph.conftest import GraphEnv

APP_ID_URI = "api://licsync"
CLIENT_ID = "0b8c2d7e-1f3a-4c5b-9d6e-7f8a9b0c1d2e"


@pytest.fixture
def verifier(graph_env: GraphEnv) -> EntraVerifier:
    tenant = graph_env.server.tenant_config("contoso", tenant=graph_env.tenant, api_audience=APP_ID_URI,
                                            api_client_id=CLIENT_ID)
    v = EntraVerifier(Settings.model_validate({"tenant": [tenant]}), refetch_after=0)
    assert v.enabled
    return v


def _v1(env: GraphEnv, **claims: Any) -> str:
    return env.tenant.issue_user_jwt({"ver": "1.0", "iss": f"https://sts.windows.net/{env.tenant.tenant_id}/",
                                      "aud": APP_ID_URI, "roles": ["LicSync.Admin"], **claims})


def _v2(env: GraphEnv, **claims: Any) -> str:
    return env.tenant.issue_user_jwt({"ver": "2.0", "aud": CLIENT_ID, "roles": ["LicSync.Platform"], **claims})


def test_v1_and_v2_tokens_are_accepted_with_their_own_audiences(graph_env: GraphEnv,
                                                                 verifier: EntraVerifier) -> None:
    v1 = verifier.verify(_v1(graph_env, upn="admin@contoso.example"))
    assert v1 is not None and (v1.tenant, v1.role, v1.subject) == ("contoso", "tenant-admin", "admin@contoso.example")
    v2 = verifier.verify(_v2(graph_env))
    assert v2 is not None and v2.role == "platform"
    # the issuers came from discovery: the emulator counted the documents it served
    assert graph_env.tenant.stats["openid"] >= 2


@pytest.mark.parametrize("case", ["v1_aud_client_id", "v2_aud_app_id_uri", "other_audience", "v1_v2_issuer",
                                  "v2_v1_issuer", "other_tenant", "other_tenant_issuer"])
def test_tokens_for_another_audience_or_tenant_are_refused(graph_env: GraphEnv, verifier: EntraVerifier,
                                                           case: str) -> None:
    other = graph_env.server.add_tenant()
    raw = {
        "v1_aud_client_id": lambda: _v1(graph_env, aud=CLIENT_ID),
        "v2_aud_app_id_uri": lambda: _v2(graph_env, aud=APP_ID_URI),
        "other_audience": lambda: _v2(graph_env, aud="api://someone-else"),
        "v1_v2_issuer": lambda: _v1(graph_env, iss=f"{graph_env.server.authority}/{graph_env.tenant.tenant_id}/v2.0"),
        "v2_v1_issuer": lambda: _v2(graph_env, iss=f"https://sts.windows.net/{graph_env.tenant.tenant_id}/"),
        "other_tenant": lambda: other.issue_user_jwt({"ver": "2.0", "aud": CLIENT_ID, "roles": ["LicSync.Admin"]}),
        "other_tenant_issuer": lambda: _v2(graph_env, iss=f"{graph_env.server.authority}/{other.tenant_id}/v2.0"),
    }[case]()
    assert verifier.verify(raw) is None
