"""Issue 18 item 7: a NUL byte in a path parameter is a 404, never a 500 with the SQL and its parameters
on stderr. PostgreSQL refuses NUL in text (SQLite does not), so the real ``licsync serve`` runs on it.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.security.server import serve


def test_a_nul_byte_in_a_path_is_a_404_and_nothing_is_logged(tmp_path: Path, pg_schema_url: str) -> None:
    with serve(tmp_path, db_url=pg_schema_url) as srv, httpx.Client(base_url=srv.base) as c:
        auth = {"Authorization": f"Bearer {srv.token}"}
        for path in ("/api/v1/tenants/contoso/access/a%00b", "/api/v1/tenants/contoso/catalogs/a%00b/status",
                     "/ui/tenants/contoso/catalogs/a%00b", "/api/v1/tenants/conto%00so/access/u-1"):
            r = c.get(path, headers=auth)
            assert r.status_code in (400, 404), (path, r.status_code, r.text)
        assert c.get("/api/v1/tenants/contoso/access/u-1", headers=auth).status_code == 200
    err = srv.stderr
    assert "Traceback" not in err and "a\\x00b" not in err and "SELECT" not in err, err[-2000:]
