"""Fault-suite fixtures: the two-database ``world``, and the closing summary of what was injected.

``LICSYNC_SOAK=1`` turns the short, seeded run into the soak (more kills, more fuzzing examples);
``LICSYNC_FAULT_SEED`` replays another random schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from licsync import db, log
from tests.faults import ledger
from tests.faults.world import SEED, SOAK, World, enroll, settings_for
from tests.graph.conftest import GraphEnv

USERS = 200  # four pages of 50 in a full round


@pytest.fixture(autouse=True)
def _info_logs() -> None:
    """Cycle events are info: a CLI run earlier in the session may have left structlog at warning."""
    log.configure("info")


@pytest.fixture
def world(graph_env: GraphEnv, engine: Engine, db_url: str, tmp_path: Path) -> Iterator[World]:
    """A tenant of 200 users, everyone enrolled, synced once (full) into both databases."""
    tenant = graph_env.tenant
    tenant.page_size = 50
    ids = tenant.directory.add_users(USERS, seed=SEED % 1000, disabled_fraction=0.05)
    ref = db.get_engine(f"sqlite:///{tmp_path}/reference.db")
    db.upgrade(ref)
    for e in (engine, ref):
        enroll(e, ids)
    w = World(graph_env.server, tenant, engine, ref, settings_for(graph_env.server, tenant, db_url, timeout="2s"),
              settings_for(graph_env.server, tenant, f"sqlite:///{tmp_path}/reference.db"))
    w.both()
    w.tick()
    yield w
    tenant.clear_faults()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not (ledger.FAULTS or ledger.KILLS or ledger.FUZZED):
        return
    terminalreporter.section(f"licsync fault suite ({'soak' if SOAK else 'short'}, seed {SEED})")
    for line in ledger.summary():
        terminalreporter.write_line(line)
