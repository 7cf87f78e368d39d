"""``licsync emulator``: the standalone Graph emulator, and a configuration a first sync can use."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cli.conftest import REPO, licsync


def test_the_emulator_command_serves_a_tenant_a_first_sync_can_read(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LICSYNC_")}, "PYTHONPATH": str(REPO)}
    config = tmp_path / "site" / "licsync.toml"
    with subprocess.Popen(
        ["licsync", "emulator", "--port", "0", "--users", "25", "--workdir", str(tmp_path / "emu"),
         "--write-config", str(config), "--admin", "it@contoso.example"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    ) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            assert info["graph_url"].startswith("https://127.0.0.1:") and info["graph_url"].endswith("/v1.0")
            text = config.read_text()
            assert info["client_secret"] not in text and 'client_secret = "file:' in text
            assert 'admins = ["it@contoso.example"]' in text
            assert licsync("--config", str(config), "db", "upgrade", cwd=tmp_path).code == 0
            sync = licsync("--config", str(config), "sync", "--tenant", "contoso", cwd=tmp_path)
            assert sync.code == 0, sync.err
            assert "25 users seen" in sync.out
            assert (config.parent / "licsync.db").is_file()  # relative to the config file
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert proc.returncode == 0
