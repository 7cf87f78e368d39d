"""Issue 18 item 13: ``token create --expires 90d``, shown in ``token list``, refused once expired."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from licsync import db, tokens
from licsync.db.models import ApiToken
from tests.api.seed import NOW
from tests.daemon.conftest import cli, free_port
from tests.security.server import config


def test_an_expiring_token_is_listed_with_its_date_and_refused_after_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port())
    r = cli(cfg, "token", "create", "--tenant", "contoso", "--role", "platform", "--expires", "90d")
    assert r.returncode == 0, r.stderr
    raw = r.stdout.strip()
    token_id = tokens.token_id_of(raw)
    listed = cli(cfg, "token", "list")
    m = re.search(rf"{token_id} .* expires (\S+)", listed.stdout)
    assert m, listed.stdout
    when = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    assert abs(when - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=5)
    assert f'"expires_at": "{m.group(1)}"' in cli(cfg, "token", "list", "--json").stdout

    engine = db.get_engine(f"sqlite:///{tmp_path}/t.db")
    with db.session_scope(engine) as s:
        assert tokens.authenticate(s, raw, datetime.now(UTC)) is not None
        assert tokens.authenticate(s, raw, datetime.now(UTC) + timedelta(days=91)) is None  # refused after
        s.execute(update(ApiToken).where(ApiToken.id == token_id)  # type: ignore[arg-type]
                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert "EXPIRED" in cli(cfg, "token", "list").stdout


def test_an_expired_token_gets_401_from_the_api(tmp_path: Path) -> None:
    from tests.api.conftest import _env, bearer

    envs = _env(tmp_path)
    env = next(envs)
    with db.session_scope(env.engine) as s:
        past = tokens.create_token(s, "contoso", "tenant-admin", [], NOW,
                                   expires_at=datetime.now(UTC) - timedelta(minutes=1))
        future = tokens.create_token(s, "contoso", "tenant-admin", [], NOW,
                                     expires_at=datetime.now(UTC) + timedelta(days=1))
    assert env.client.get("/api/v1/me", headers=bearer(past)).status_code == 401
    assert env.client.get("/api/v1/me", headers=bearer(future)).status_code == 200
    envs.close()


def test_a_bad_expiry_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port())
    for bad in ("soon", "-5d", "0s"):
        r = cli(cfg, "token", "create", "--tenant", "contoso", "--role", "platform", "--expires", bad)
        assert r.returncode != 0 and r.stdout == "" and "--expires" in r.stderr, (bad, r.stderr)
