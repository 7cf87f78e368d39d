"""The benchmarks keep working: each script runs with a tiny tenant, exits 0 and prints its table.

No timing assertions: these runs only prove the scripts, the generator, the emulator process and
the workers still fit the code. PostgreSQL is used when LICSYNC_TEST_PG_URL names one (the
benchmarks otherwise default to the local one), SQLite always.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run(script: str, *args: str, tmp_path: Path, timeout: float = 120) -> str:
    env = {**os.environ}
    if os.environ.get("LICSYNC_TEST_PG_URL"):
        env["LICSYNC_BENCH_PG_URL"] = os.environ["LICSYNC_TEST_PG_URL"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_tenant_generator_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        subprocess.run(
            [sys.executable, str(BENCH / "tenant.py"), "csv", "--users", "300", "--out", str(out)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_text().splitlines()
    assert lines[0].startswith("catalog_id,catalog_name,course_id,")
    assert len(lines) > 300


def test_bench_sync_smoke(tmp_path: Path) -> None:
    args = ("--users", "300", "--subset", "100", "--churn", "30", "--db", "sqlite")
    out = run("bench_sync.py", *args, tmp_path=tmp_path)
    pieces = ("floor: httpx", "baseline: SDK typed models", "licsync: full sync + reconcile", "licsync: incremental")
    for piece in pieces:
        assert piece in out
    assert "licsync/floor (wall)" in out and "baseline/licsync (wall)" in out
    assert "access decision" in out and "status (" in out


def test_bench_incremental_smoke(tmp_path: Path) -> None:
    out = run("bench_incremental.py", "--sizes", "300", "--churn", "30", "--db", "sqlite", tmp_path=tmp_path)
    assert "incr. wall s" in out
    assert "| sqlite " in out


@pytest.mark.parametrize("db", ["sqlite"])
def test_bench_100k_smoke(tmp_path: Path, db: str) -> None:
    out = run("bench_100k.py", "--users", "300", "--db", db, tmp_path=tmp_path)
    assert "full sync (empty mirror)" in out
    assert "Graph requests" in out


def test_api_latency_smoke(tmp_path: Path) -> None:
    """Both modes against ``licsync serve`` in its own process: sequential, and the open loop."""
    out = run("api_latency.py", "--users", "300", "--catalogs", "12", "--requests", "30", "--in-process", "3",
              tmp_path=tmp_path)
    for name in ("access (platform)", "access, no seat", "catalog status", "tenant status", "access decision"):
        assert name in out
    assert "12 catalogs" in out and "In-process" in out and "Sequential" in out
    (tmp_path / "rate").mkdir()
    out = run("api_latency.py", "--users", "300", "--rate", "50", "--duration", "1", "--warmup", "0.5",
              "--in-process", "0", "--endpoints", "access,tenant-status", tmp_path=tmp_path / "rate")
    assert "Open loop, 50 req/s" in out and "achieved req/s" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| access (platform)") or ln.startswith("| tenant status")]
    assert len(rows) == 2
    assert all(ln.split("|")[5].strip() == "0" for ln in rows), rows  # no errors


def test_bench_import_smoke(tmp_path: Path) -> None:
    out = run("bench_import.py", "--users", "300", "--db", "sqlite", tmp_path=tmp_path)
    for step in ("first import", "same file again", "~1 % changed"):
        assert step in out


def test_bench_scale_smoke(tmp_path: Path) -> None:
    args = ("--users", "600", "--latency", "0.01", "--db", "sqlite", "--walk-pages", "2", "--concurrency", "4")
    out = run("bench_scale.py", *args, "--json", str(tmp_path / "r.json"), tmp_path=tmp_path, timeout=240)
    for piece in ("sequential delta walk", "parallel read", "quiet incremental", "failing at 90 %", "resumed round",
                  "floor: httpx"):
        assert piece in out
    again = run("bench_scale.py", "--report", str(tmp_path / "r.json"), tmp_path=tmp_path)
    assert "resumed round" in again


def test_bench_replicas_smoke(tmp_path: Path) -> None:
    if not os.environ.get("LICSYNC_TEST_PG_URL"):
        pytest.skip("PostgreSQL not configured: set LICSYNC_TEST_PG_URL to run these")
    out = run("bench_replicas.py", "--tenants", "4", "--hours", "0.3", tmp_path=tmp_path)
    assert "double cycles" in out and "yes (licsync)" in out
