"""Helpers for the CLI tests: the real ``licsync`` console script, as a newcomer runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str


def licsync(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    """Run the installed console script with this tree first on the path (PYTHONPATH)."""
    exe = shutil.which("licsync") or sys.executable
    argv = [exe, *args] if exe != sys.executable else [exe, "-m", "licsync", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LICSYNC_")}
    full_env.update({"PYTHONPATH": str(REPO), "COLUMNS": "100", "NO_COLOR": "1", **(env or {})})
    proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def run_licsync():
    return licsync
