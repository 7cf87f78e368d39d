"""SQL is built only through SQLAlchemy (ORM or Core, bound parameters) — a static check of the package.

Every place that hands SQL *text* to the database (``text()``, ``literal_column()``,
``exec_driver_sql()``, a DB-API ``execute()`` with a string) is listed below with why it is safe.
A new one fails this test until it is reviewed and added; an f-string may interpolate only
constants and ``int(...)``; the one helper that takes table names (``db.analyze``) may be called only
with literal names or ``Model.__tablename__``. Migrations (static DDL) are out of scope.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "licsync"
SINKS = {"text", "literal_column", "exec_driver_sql", "execute", "executemany", "executescript"}
ALLOWED = {
    ("api/routes.py", "'SELECT 1'"): "health probe, constant",
    ("health.py", "'SELECT 1'"): "health probe, constant",
    ("daemon.py", "'SELECT pg_try_advisory_lock(hashtext(:k))'"): "bound parameter :k",
    ("daemon.py", "'SELECT pg_advisory_unlock(hashtext(:k))'"): "bound parameter :k",
    ("db/models.py", "'released_at IS NULL'"): "partial index predicate, constant",
    ("db/__init__.py", "\"SELECT pg_advisory_lock(hashtext('licsync-migrate'))\""): "migration lock, constant",
    ("db/__init__.py", "\"SELECT pg_advisory_unlock(hashtext('licsync-migrate'))\""): "migration lock, constant",
    ("notify/budget.py", "'SELECT pg_advisory_xact_lock(hashtext(:k))'"): "bound parameter :k",
    ("db/__init__.py", "'PRAGMA journal_mode=WAL'"): "constant",
    ("db/__init__.py", "'PRAGMA synchronous=NORMAL'"): "constant",
    ("db/__init__.py", "'PRAGMA busy_timeout=30000'"): "constant",
    ("db/__init__.py", "'PRAGMA foreign_keys=ON'"): "constant",
    ("db/__init__.py", "f'ANALYZE \"{table}\"'"): "table names from the package only (checked below)",
    ("ledger.py", "'SET LOCAL enable_nestloop = off'"): "planner setting, constant",
    ("ledger.py", "'SET LOCAL enable_nestloop = on'"): "planner setting, constant",
    ("db/bulk.py", "compiled.string"): "a Core statement compiled by SQLAlchemy, values bound",
    ("db/bulk.py", "'PRAGMA cache_size'"): "constant",
    ("db/bulk.py", "f'PRAGMA cache_size=-{SQLITE_BULK_CACHE_KIB}'"): "module constant",
    ("db/bulk.py", "f'PRAGMA cache_size={int(before)}'"): "an int read back from SQLite",
}


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_text(node: ast.expr) -> bool:
    """Built as a string: a literal, an f-string, concatenation/%-formatting, or ``.format``."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _is_text(node.left) or _is_text(node.right)
    return isinstance(node, ast.Call) and _name(node.func) == "format"


def sql_text_sites() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("db/migrations/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args and _name(node.func) in SINKS):
                continue
            arg = node.args[0]
            dynamic = _name(node.func) in ("text", "literal_column", "exec_driver_sql")
            if _is_text(arg) or (dynamic and not isinstance(arg, ast.Constant)):
                out.append((rel, ast.unparse(arg), node.lineno))
    return out


def test_every_piece_of_sql_text_is_reviewed() -> None:
    sites = sql_text_sites()
    assert sites, "the scan found nothing: it is broken"
    unreviewed = [f"licsync/{p}:{line}: {src}" for p, src, line in sites if (p, src) not in ALLOWED]
    assert unreviewed == [], "SQL built from text; use SQLAlchemy with bound parameters, or review and allowlist"


def test_fstrings_in_sql_interpolate_only_constants() -> None:
    for (_path, src), _why in ALLOWED.items():
        node = ast.parse(src, mode="eval").body
        for value in (v.value for v in getattr(node, "values", []) if isinstance(v, ast.FormattedValue)):
            ok = (isinstance(value, ast.Name) and (value.id.isupper() or value.id == "table")) or (
                isinstance(value, ast.Call) and _name(value.func) == "int")
            assert ok, src


def test_analyze_is_given_only_the_packages_own_table_names() -> None:
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _name(node.func) == "analyze":
                calls.append(node)
                for arg in node.args[1:]:
                    literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.isidentifier()
                    tablename = isinstance(arg, ast.Attribute) and arg.attr == "__tablename__"
                    assert literal or tablename, f"{path}: analyze({ast.unparse(arg)})"
    assert calls
