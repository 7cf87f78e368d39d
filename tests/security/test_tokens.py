"""API token hashes are compared in constant time, for every kind of presented token — including a
token id that does not exist, so a timing difference cannot tell which ids exist — and never with ``==``.
"""

from __future__ import annotations

import ast
import hmac
import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import db, tokens
from licsync.db import session_scope
from tests.api.seed import NOW


@pytest.fixture
def token_db(tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    engine = db.get_engine(f"sqlite:///{tmp_path}/t.db")
    db.upgrade(engine)
    with session_scope(engine) as s:
        raw = tokens.create_token(s, "contoso", "tenant-admin", [], NOW)
    yield engine, raw
    engine.dispose()


def test_authenticate_compares_hashes_with_hmac_compare_digest(token_db: tuple[Engine, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    engine, raw = token_db
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: object, b: object) -> bool:
        calls.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    unknown_id = "lsy_" + "f" * 16 + "_" + raw.split("_", 2)[2]
    cases = {"valid": raw, "wrong secret": raw[:21] + "A" * 43, "unknown id": unknown_id}
    with Session(engine) as s:
        for what, presented in cases.items():
            before = len(calls)
            p = tokens.authenticate(s, presented, NOW)
            assert (p is not None) == (what == "valid"), what
            assert len(calls) == before + 1, f"{what}: the hash was not compared with hmac.compare_digest"
            a, b = calls[-1]
            assert a == tokens.hash_token(presented) and isinstance(b, str) and len(b) == 64, what


def test_no_hash_or_secret_is_compared_with_equality() -> None:
    """A static check of ``licsync.tokens``: no ``==``/``!=`` touches a hash, a digest or a secret."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(tokens)))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            text = ast.unparse(node)
            if any(w in text for w in ("hash", "digest", "secret", "raw")):
                bad.append(text)
    assert bad == []


def test_only_the_hash_is_stored(token_db: tuple[Engine, str]) -> None:
    engine, raw = token_db
    with engine.connect() as c:
        dump = repr(c.exec_driver_sql("SELECT * FROM api_token").all())
    assert raw not in dump and raw.split("_", 2)[2] not in dump
    assert tokens.hash_token(raw) in dump
