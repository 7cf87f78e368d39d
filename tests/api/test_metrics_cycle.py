"""/metrics after a real cycle: the real msgraph-sdk against the Graph emulator, the daemon's
scheduler path, then an access decision over the API; scraped and read back by prometheus_client."""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from licsync import db, tokens
from licsync.api import create_app
from licsync.config import Settings
from licsync.daemon import Locks, default_jobs, instance_id
from licsync.db import session_scope
from licsync.db.models import SyncCycle
from licsync.scheduler import SyncScheduler
from tests.graph.conftest import GraphEnv
from tests.metrics_text import parse_metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_metrics_after_a_cycle(tmp_path: Path, graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(30, seed=5)
    settings = Settings.model_validate({
        "database": {"url": f"sqlite:///{tmp_path}/t.db"},
        "tenant": [graph_env.server.tenant_config("contoso", tenant=graph_env.tenant, max_retries=4)],
        "api": {"replica": "replica-a", "metrics_tenant_labels": "name"}})
    engine = db.get_engine(settings.database.url)
    db.upgrade(engine)
    graph_env.tenant.throttle_next(1, retry_after=0)  # one 429, retried at once

    sched = SyncScheduler(settings, engine, default_jobs(), Locks(engine, instance_id()))
    assert asyncio.run(sched.run_cycle(settings.tenant[0], "full")) is True

    with Session(engine) as s:
        (row,) = s.exec(SyncCycle.__table__.select()).all()  # type: ignore[attr-defined,call-overload]
    # the zero-duration bug: the row's summary was stored before the cycle's figures were known
    assert row.summary["duration_s"] > 0 and row.summary["graph_requests"] >= 2, row.summary
    assert row.summary["retries"] >= 1

    with session_scope(engine) as s:
        token = tokens.create_token(s, "contoso", "platform", [], row.started_at)
    with TestClient(create_app(settings, engine)) as client:
        assert client.get("/api/v1/tenants/contoso/access/nobody",
                          headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/api/v1/tenants/contoso/access/nobody",
                          headers={"Authorization": "Bearer lsy_bad"}).status_code == 401
        text = client.get("/metrics").text
    m = parse_metrics(text, replica="replica-a")

    # database-derived, now true
    assert m['licsync_sync_cycle_duration_seconds_count{tenant="contoso"}'] == 1
    assert m['licsync_sync_cycle_duration_seconds_sum{tenant="contoso"}'] == row.summary["duration_s"] > 0
    assert m['licsync_graph_requests_total{tenant="contoso"}'] == row.summary["graph_requests"]
    assert m['licsync_graph_retries_total{tenant="contoso"}'] >= 1
    # this process's own
    assert m['licsync_cycle_seconds_count{kind="full",status="ok",tenant="contoso"}'] >= 1
    assert m['licsync_cycle_seconds_sum{kind="full",status="ok",tenant="contoso"}'] > 0
    delta = 'licsync_graph_request_duration_seconds_count{endpoint="/users/delta()",method="GET",status="200"}'
    assert m[delta] >= 1
    assert m['licsync_graph_request_duration_seconds_count{endpoint="/users/delta()",method="GET",status="429"}'] >= 1
    assert m['licsync_graph_throttled_total{tenant="contoso"}'] >= 1
    assert m['licsync_graph_request_retries_total{reason="429",tenant="contoso"}'] >= 1
    assert m['licsync_access_decision_seconds_count{status="200"}'] >= 1
    assert m['licsync_access_decision_seconds_count{status="401"}'] >= 1
    assert m['licsync_access_decision_seconds_sum{status="200"}'] > 0
    # no user id, token or query string in any label
    assert "nobody" not in text and "lsy_" not in text and "deltatoken" not in text.lower()

    # every series the Grafana dashboard queries is one /metrics declares
    families = {f.name for f in text_string_to_metric_families(text)}
    dashboard = (Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "licsync.json").read_text()
    used = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in re.findall(r"\blicsync_\w+", dashboard)}
    assert used and used <= families, used - families
