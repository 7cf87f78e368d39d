"""``licsync activate`` with the key that is already active: exit 0, "already active since …"."""

from __future__ import annotations

from pathlib import Path

from licsync.subscriptions import keys
from tests.cli.conftest import licsync


def test_activating_the_active_key_again_is_no_error(tmp_path: Path) -> None:
    private, public = keys.generate_keypair()
    (tmp_path / "vendor.key").write_bytes(private)
    (tmp_path / "secret").write_text("x")
    (tmp_path / "licsync.toml").write_text(
        f'[database]\nurl = "sqlite:///licsync.db"\n[vendor]\npublic_key = "{public}"\n'
        '[[tenant]]\nname = "contoso"\ntenant_id = "11111111-2222-4333-8444-555555555555"\n'
        'client_id = "66666666-7777-4888-9999-000000000001"\nclient_secret = "file:secret"\n'
    )
    assert licsync("db", "upgrade", cwd=tmp_path).code == 0
    issued = licsync("--now", "2026-11-20T09:00:00Z", "subscription", "issue", "--private-key", "vendor.key",
                     "--id", "S-1", "--customer", "Contoso", "--seats", "50", "--starts", "2026-11-01",
                     "--ends", "2027-10-31", cwd=tmp_path)
    assert issued.code == 0, issued.err
    key = issued.out.strip()
    first = licsync("--now", "2026-11-22T10:00:00Z", "activate", "--tenant", "contoso", key, cwd=tmp_path)
    assert first.code == 0, first.err
    assert "is now active on contoso." in first.out
    again = licsync("--now", "2026-11-23T10:00:00Z", "activate", "--tenant", "contoso", key, cwd=tmp_path)
    assert again.code == 0, again.err
    assert "is already active on contoso since 2026-11-22 10:00 UTC; nothing changed." in again.out
