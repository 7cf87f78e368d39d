"""Fixtures: one HTTPS Graph emulator per session, a fresh tenant (directory, app, knobs) per test.

A tenant per test keeps tests independent without paying a server start each time. Reuse from
another conftest with ``pytest_plugins = ["tests.graph.conftest"]`` or copy the two fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from licsync.config import TenantConfig
from licsync.graph.emulator import EmulatedTenant, EmulatorServer


@pytest.fixture(scope="session")
def graph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    with EmulatorServer(workdir=tmp_path_factory.mktemp("graph-emulator")) as server:
        yield server


@dataclass
class GraphEnv:
    """A test's tenant on the shared server, and the licsync configuration that points at it."""

    server: EmulatorServer
    tenant: EmulatedTenant
    sleeps: list[float] = field(default_factory=list)

    def config(self, **overrides: Any) -> TenantConfig:
        return TenantConfig(**self.server.tenant_config("contoso", tenant=self.tenant, **overrides))

    async def sleep(self, seconds: float) -> None:
        """Recording sleep for GraphClient: the wait is measured, and really awaited."""
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds)

    def client(self, **overrides: Any) -> Any:
        """A GraphClient with a 1 ms backoff base, so 5xx retries stay fast."""
        from licsync.graph.client import GraphClient

        client = GraphClient(self.config(**overrides), sleep=self.sleep)
        client.backoff_base = 0.001
        return client


@pytest.fixture
def graph_env(graph_server: EmulatorServer) -> GraphEnv:
    return GraphEnv(graph_server, graph_server.add_tenant())


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    """A CA that did not sign the emulator's certificate."""
    from licsync.graph.tls import make_test_pki

    return make_test_pki(tmp_path / "other-pki").ca_cert
