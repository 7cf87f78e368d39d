"""API fixtures: a seeded SQLite database, the app with a fixed clock, and a TestClient.

``shared`` is seeded once per module for read-only tests (the authorization matrix makes ~100
requests); ``fresh`` gives a test its own database when it writes (revocation, rate limits).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from licsync import db
from licsync.api.auth import FailureLimiter
from tests.api.seed import NOW, Seeded, seed, settings

with warnings.catch_warnings():
    # Starlette ≥1.x asks for `httpx2`; the project pins httpx. Silence only this import's notice.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@dataclass
class Env:
    engine: Engine
    seeded: Seeded
    client: TestClient
    make_client: Callable[..., TestClient]

    @property
    def tokens(self) -> dict[str, str]:
        return self.seeded.tokens


def _env(path: Path) -> Iterator[Env]:
    engine = db.get_engine(f"sqlite:///{path}/t.db")
    db.upgrade(engine)
    seeded = seed(engine)
    clients: list[TestClient] = []

    def make_client(**kwargs: Any) -> TestClient:
        from licsync.api import create_app

        kwargs.setdefault("clock", lambda: NOW)
        kwargs.setdefault("limiter", FailureLimiter(limit=100_000))
        app_settings = kwargs.pop("settings", None) or settings()
        c = TestClient(create_app(app_settings, engine, **kwargs), raise_server_exceptions=False)
        clients.append(c)
        return c

    try:
        yield Env(engine, seeded, make_client(), make_client)
    finally:
        for c in clients:
            c.close()
        engine.dispose()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory.mktemp("api"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Env]:
    yield from _env(tmp_path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
