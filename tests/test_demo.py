"""``licsync demo`` as a newcomer runs it: a busy port is refused up front, step 4 shows its restores,
lists are never cut silently, and grace at the start is explained."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.cli.conftest import licsync


def test_a_busy_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = licsync("demo", "--users", "100", "--port", str(port), "--workdir", str(tmp_path / "demo"), cwd=tmp_path)
    assert r.code == 75, r.err
    assert r.err.strip().startswith(f"licsync: error: port {port} on 127.0.0.1 is already in use")
    assert re.search(r"licsync demo --port \d+", r.err) and len(r.err.strip().splitlines()) == 1
    assert r.out == "" and not (tmp_path / "demo").exists()  # no login link, nothing created


def test_the_demo_shows_its_restores_its_counts_and_why_grace_started(tmp_path: Path) -> None:
    r = licsync("demo", "--users", "3000", "--no-serve", "--workdir", str(tmp_path / "demo"), cwd=tmp_path,
                timeout=180)
    assert r.code == 0, r.err
    out = r.out
    assert "the demo's key is a little short on purpose, so seat-limit grace starts" in out
    restored = re.search(r"(\d+) restored from deleted items", out)
    assert restored and int(restored.group(1)) > 0
    assert f"restored: {restored.group(1)} users back in the directory" in out
    frees = int(re.search(r"seats \+\d+ −(\d+), \d+ consumed; 2 Graph", out).group(1))  # type: ignore[union-attr]
    assert frees > 5 and out.count("   · freed: ") == 5
    assert f"   · … and {frees - 5} more freed" in out
    assert "   · taken: " in out  # the restored users' seats
