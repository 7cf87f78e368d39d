"""benchmarks/hostile_load.py keeps working (small sizes; no timing assertions beyond the refusals)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_hostile_load_smoke(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hostile_load.py"), "--post-mb", "16",
                           "--half-open", "60", "--rate", "50", "--duration", "1", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| 16 MB, Content-Length, no token | HTTP/1.1 413" in out
    assert "| 16 MB, chunked, no token | HTTP/1.1 401" in out
    assert "60 half-open sockets, held open" in out and "60 opened, 0 refused" in out
