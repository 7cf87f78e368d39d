"""Optional OpenTelemetry traces, configured by the standard OTEL_* variables: a real ``licsync
sync`` against the Graph emulator exports msgraph/kiota's Graph spans (console exporter here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from licsync import db
from licsync.errors import ConfigError
from licsync.otel import wanted
from tests.conftest import write_config
from tests.daemon.conftest import REPO
from tests.graph.conftest import GraphEnv


@pytest.mark.parametrize(("env", "kind"), [
    ({}, None),
    ({"OTEL_SERVICE_NAME": "x"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, None),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
])
def test_what_the_environment_asks_for(env: dict[str, str], kind: str | None) -> None:
    assert wanted(env) == kind


def test_an_unknown_exporter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        wanted({"OTEL_TRACES_EXPORTER": "zipkin"})


def _run(tmp_path: Path, graph_env: GraphEnv, **otel: str) -> subprocess.CompletedProcess[str]:
    url = f"sqlite:///{tmp_path}/t.db"
    db.upgrade(db.get_engine(url))
    config = write_config(tmp_path / "licsync.toml", {
        "database": {"url": url}, "tenant": [graph_env.server.tenant_config("contoso", tenant=graph_env.tenant)]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | otel
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "licsync", "--config", str(config), "sync", "--tenant", "contoso"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_sync_exports_graph_spans(tmp_path: Path, graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(3, seed=1)
    r = _run(tmp_path, graph_env, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="licsync-test")
    assert r.returncode == 0, r.stderr
    decoder, text, spans = json.JSONDecoder(), r.stdout, []
    i = text.find("{")
    while i != -1:
        span, end = decoder.raw_decode(text, i)
        spans.append(span)
        i = text.find("{", end)
    assert spans, r.stdout
    assert all(s["resource"]["attributes"]["service.name"] == "licsync-test" for s in spans)
    assert any("delta" in json.dumps(s.get("attributes", {})) or "delta" in s["name"] for s in spans)
    assert "contoso: full" in r.stdout  # the command's own line is still there


def test_without_otel_variables_nothing_is_exported(tmp_path: Path, graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(3, seed=1)
    r = _run(tmp_path, graph_env)
    assert r.returncode == 0 and "{" not in r.stdout, r.stdout
