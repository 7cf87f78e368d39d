"""Issue 18 item 6: two ``licsync sync`` on one SQLite tenant never overlap. The tenant's lease row is
held by a live ``licsync sync`` process (no heartbeat of its own: it is not a daemon); a second one
waits briefly, then exits 75 "another licsync is syncing". Once the holder is gone its lease is taken.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.daemon.conftest import REPO, cli, env, free_port
from tests.security.server import config

HOLDER = textwrap.dedent("""
    import os, socket, sys, time
    from licsync import db
    from licsync.daemon import Locks
    engine = db.get_engine(sys.argv[1])
    with Locks(engine, f"cli:{socket.gethostname()}:{os.getpid()}").hold("contoso") as got:
        print("held" if got else "not held", flush=True)
        time.sleep(60)
""")


def _hold(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True, env=env(),
                            cwd=REPO)


def test_a_second_sync_of_a_tenant_exits_75_while_another_holds_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port())
    url = f"sqlite:///{tmp_path}/t.db"
    holder = _hold(url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = cli(cfg, "sync", "--tenant", "contoso", timeout=60)
        assert r.returncode == 75, (r.returncode, r.stderr)
        assert "another licsync is syncing tenant contoso" in r.stderr
        second = _hold(url)  # the same lock as `licsync sync` takes, from a third process: not held either
        try:
            assert second.stdout is not None and second.stdout.readline().strip() == "not held"
        finally:
            second.kill()
            second.communicate()
    finally:
        holder.kill()
        holder.communicate()
    third = _hold(url)  # its holder's process is gone: the lease is taken at once
    try:
        assert third.stdout is not None and third.stdout.readline().strip() == "held"
    finally:
        third.kill()
        third.communicate()
