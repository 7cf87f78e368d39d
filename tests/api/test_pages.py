"""The dashboard over HTTP: login, cookie, what each role sees, the bar and the chart."""

from __future__ import annotations

import re
from typing import Any

from tests.api.conftest import Env, bearer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def csrf_of(c: Any) -> str:
    """Open the sign-in form as a browser would: its CSRF cookie, repeated in the form."""
    r = c.get("/ui/login")
    m = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert m and c.cookies.get("licsync_csrf") == m.group(1)
    return m.group(1)


def test_login_sets_a_strict_httponly_cookie(fresh: Env) -> None:
    c = fresh.make_client()
    csrf = csrf_of(c)
    r = c.post("/ui/login", content=f"token={fresh.tokens['cat_a']}&csrf={csrf}", headers=FORM,
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/tenants/contoso"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    page = c.get("/ui/tenants/contoso")
    assert page.status_code == 200 and "Sales Academy" in page.text
    assert f'name="csrf" value="{csrf}"' in page.text and 'action="/ui/logout"' in page.text
    assert c.post("/ui/logout", content=f"csrf={csrf}", headers=FORM, follow_redirects=False).status_code == 303
    c.cookies.clear()
    assert c.get("/ui/tenants/contoso").status_code == 401


def test_login_by_query_token_no_longer_signs_in(fresh: Env) -> None:
    c = fresh.make_client()
    r = c.get(f"/ui/login?token={fresh.tokens['admin']}", follow_redirects=False)
    assert r.status_code == 200 and "licsync_token" not in r.headers.get("set-cookie", "")


def test_login_refuses_bad_and_platform_tokens(fresh: Env) -> None:
    c = fresh.make_client()
    csrf = csrf_of(c)
    bad = c.post("/ui/login", content=f"token=lsy_nope&csrf={csrf}", headers=FORM)
    assert bad.status_code == 401 and "licsync_token" not in bad.headers.get("set-cookie", "") and "invalid" in bad.text
    plat = c.post("/ui/login", content=f"token={fresh.tokens['platform']}&csrf={csrf}", headers=FORM)
    assert plat.status_code == 403 and "licsync_token" not in plat.headers.get("set-cookie", "")


def test_unauthenticated_page_shows_the_login_form(shared: Env) -> None:
    r = shared.client.get("/ui/tenants/contoso")
    assert r.status_code == 401 and '<form method="post" action="/ui/login"' in r.text


def test_catalog_admin_sees_only_their_catalogs(shared: Env) -> None:
    page = shared.client.get("/ui/tenants/contoso", headers=bearer(shared.tokens["cat_a"])).text
    assert "Sales Academy" in page and "cat-a" in page
    assert "Safety Training" not in page and "cat-b" not in page
    assert "Your catalogs" in page
    admin = shared.client.get("/ui/tenants/contoso", headers=bearer(shared.tokens["admin"])).text
    assert "Safety Training" in admin and "cat-b" in admin


def test_figures_bar_and_chart(shared: Env) -> None:
    page = shared.client.get("/ui/tenants/contoso", headers=bearer(shared.tokens["admin"])).text
    assert re.search(r'id="purchased">10<', page) and re.search(r'id="consumed">4<', page)
    assert re.search(r'id="available">6<', page)
    assert 'class="usage ok"' in page  # 40 %: green
    assert "<polyline class=\"consumed\"" in page and "<svg class=\"chart\"" in page
    assert "<script" not in page and "style=" not in page  # the CSP allows neither inline


def test_catalog_page(shared: Env) -> None:
    page = shared.client.get("/ui/tenants/contoso/catalogs/cat-a", headers=bearer(shared.tokens["cat_a"])).text
    assert "Sales Academy" in page and 'id="catalog-consumed">3<' in page
    assert "Safety" not in page


def test_usage_levels() -> None:
    from licsync.api.charts import usage

    assert usage(79, 100).level == "ok"
    assert usage(80, 100).level == "warn"
    assert usage(99, 100).level == "warn"
    assert usage(100, 100).level == "over"
    assert usage(130, 100).width == 100.0
    assert usage(1, 0).level == "over" and usage(0, 0).pct is None


def test_grace_countdown_is_shown(fresh: Env) -> None:
    from datetime import timedelta

    from licsync.db import session_scope
    from licsync.db.models import GraceState
    from tests.api.seed import NOW

    with session_scope(fresh.engine) as s:
        s.add(GraceState(tenant="contoso", subscription_id="SUB-C", state="active", reason="seat_limit",
                         started_at=NOW - timedelta(days=4), ends_at=NOW + timedelta(days=10), updated_at=NOW))
    page = fresh.client.get("/ui/tenants/contoso", headers=bearer(fresh.tokens["cat_a"])).text
    assert 'id="grace"' in page and "10 days left" in page
