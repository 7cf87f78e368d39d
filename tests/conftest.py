"""Shared fixtures: databases (SQLite always, PostgreSQL when LICSYNC_TEST_PG_URL names one).

PostgreSQL tests run in a schema of their own (search_path), dropped afterwards, so tests never
see each other's rows. CI sets LICSYNC_TEST_REQUIRE_PG=1: there, an unreachable PostgreSQL is a
failure, not a skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from licsync import db
from tests.notify.conftest import SmtpServer

PG_URL = os.environ.get("LICSYNC_TEST_PG_URL", "")
REQUIRE_PG = os.environ.get("LICSYNC_TEST_REQUIRE_PG") == "1"


def _pg_available() -> bool:
    if not PG_URL:
        return False
    probe = create_engine(PG_URL)
    try:
        with probe.connect() as c:
            c.execute(text("select 1"))
        return True
    except Exception:
        return False
    finally:
        probe.dispose()


_PG_OK: bool | None = None


def pg_url_or_skip() -> str:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = _pg_available()
    if not _PG_OK:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required (LICSYNC_TEST_REQUIRE_PG=1) but {PG_URL or 'no URL'} is unreachable")
        pytest.skip("PostgreSQL not configured: set LICSYNC_TEST_PG_URL to run these")
    return PG_URL


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test, as a URL whose search_path points at it."""
    base = pg_url_or_skip()
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(base, pool_pre_ping=True)  # survives a server restart during the test
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/licsync.db"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Engines the code under test created (the CLI makes its own) are closed after each test."""
    yield
    db.dispose_all()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = db.get_engine(db_url)
    db.upgrade(e)
    yield e


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    e = db.get_engine(f"sqlite:///{tmp_path}/licsync.db")
    db.upgrade(e)
    yield e


def write_config(path: Path, data: dict[str, Any]) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


# The Graph emulator fixtures (one HTTPS server per session, a fresh tenant per test) serve every test.
from tests.graph.conftest import GraphEnv, graph_env, graph_server  # noqa: E402, F401


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port, for every test that sends mail."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
