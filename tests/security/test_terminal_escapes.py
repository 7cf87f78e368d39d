"""Issue 18 item 5: terminal escapes in stored text reach no admin's terminal. Each command that prints
stored text runs as a real ``licsync`` process over a database whose catalog names, token labels,
held frees and notification errors carry ``ESC[2J`` (clear the screen) and rich markup; the output must
show them escaped, never carry a raw control character.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from licsync import db, tokens
from licsync.cli.escape import clean, printable
from licsync.db.models import Catalog, MassFreeHold, OutboxMessage
from tests.api.seed import NOW, seed
from tests.daemon.conftest import cli, free_port
from tests.security.server import config

EVIL = "\x1b[2J\x1b[H\x1b[32mAll seats OK\x07\r\n[red]fake[/red]"
SHOWN = "\\x1b[2J\\x1b[H"


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("escapes")
    path = config(tmp, free_port())
    engine = db.get_engine(f"sqlite:///{tmp}/t.db")
    seed(engine)
    with db.session_scope(engine) as s:
        s.execute(update(Catalog).where(Catalog.id == "cat-a").values(name=EVIL))  # type: ignore[arg-type]
        tokens.create_token(s, "contoso", "platform", [], NOW, label=EVIL)
        s.add(MassFreeHold(id="hold-evil", tenant="contoso", created_at=NOW, reason=EVIL, frees=3, plan=[]))
        s.add(OutboxMessage(idempotency_key="evil", tenant="contoso", event="usage", recipient="a@b.example",
                            subject="s", body_text="b", status="failed", attempts=8, created_at=NOW - timedelta(1),
                            last_error=EVIL))
    engine.dispose()
    return path


@pytest.mark.parametrize("args", [
    ("status", "--tenant", "contoso"),
    ("status", "--tenant", "contoso", "--catalog", "cat-a"),
    ("explain", "--tenant", "contoso", "u-ann"),
    ("holds",),
    ("token", "list"),
    ("notifications", "list"),
], ids=" ".join)
def test_stored_text_is_printed_escaped(cfg: Path, args: tuple[str, ...]) -> None:
    r = cli(cfg, "--now", NOW.isoformat(), *args)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out, repr(out)
    if args[0] != "explain":  # explain names the user's reason, not necessarily the catalog
        assert SHOWN in out.replace("\n", ""), out


def test_the_escaping_function() -> None:
    assert printable(EVIL) == "\\x1b[2J\\x1b[H\\x1b[32mAll seats OK\\x07\\r\\n[red]fake[/red]"
    assert clean({"a": [EVIL]}, markup=True)["a"][0].endswith("\\[red]fake\\[/red]")
