"""Issue 18 items 8, 10, 11 and 12, in process: removed tenants' tokens, the dashboard's sign-in and
sign-out, redirects that do not echo the Host header, and ``/metrics`` that names no tenant to a stranger.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from licsync.config import Settings
from tests.api.conftest import Env, _env, bearer
from tests.api.seed import settings_data

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from _env(tmp_path)


def settings_with(api: dict[str, Any] | None = None, **top: Any) -> Settings:
    return Settings.model_validate(settings_data() | {"api": api or {}} | top)


# ------------------------------------------------------------------ 8: a tenant removed from the configuration

def test_tokens_of_a_tenant_removed_from_the_configuration_stop_working(env: Env) -> None:
    only_contoso = settings_data()
    only_contoso["tenant"] = only_contoso["tenant"][:1]
    c = env.make_client(settings=Settings.model_validate(only_contoso))
    for path in ("/api/v1/me", "/api/v1/tenants/fabrikam/status", "/ui/tenants/fabrikam"):
        r = c.get(path, headers=bearer(env.tokens["other_admin"]))
        assert r.status_code == 401, (path, r.status_code)
        assert "fay" not in r.text and "fabrikam.example" not in r.text
    r = c.get("/api/v1/tenants/fabrikam/access/u-fay", headers=bearer(env.tokens["other_platform"]))
    assert r.status_code == 401
    assert c.get("/api/v1/me", headers=bearer(env.tokens["admin"])).status_code == 200  # contoso's still work


# ------------------------------------------------------------------ 10: sign-in and sign-out

def _csrf(c: Any) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
    assert m is not None
    return m.group(1)


def test_a_token_in_the_url_signs_nobody_in(env: Env) -> None:
    c = env.make_client()
    r = c.get(f"/ui/login?token={env.tokens['admin']}", follow_redirects=False)
    assert r.status_code == 200 and "licsync_token" not in r.headers.get("set-cookie", "")
    assert c.get("/ui/tenants/contoso").status_code == 401


def test_sign_in_without_the_forms_csrf_token_is_refused(env: Env) -> None:
    """A cross-site form (login CSRF) has neither the cookie nor the value: nothing is signed in."""
    attacker = env.make_client()
    r = attacker.post("/ui/login", content=f"token={env.tokens['admin']}", headers=FORM, follow_redirects=False)
    assert r.status_code == 403 and "licsync_token" not in r.headers.get("set-cookie", "")
    victim = env.make_client()
    _csrf(victim)  # the victim has a CSRF cookie of its own; a guessed value does not match it
    r = victim.post("/ui/login", content=f"token={env.tokens['admin']}&csrf={'x' * 32}", headers=FORM,
                    follow_redirects=False)
    assert r.status_code == 403 and "licsync_token" not in r.headers.get("set-cookie", "")


def test_a_one_time_code_signs_in_once(env: Env) -> None:
    c = env.make_client()
    code = c.app.state.ctx.login_codes.issue(env.tokens["admin"])  # type: ignore[attr-defined]
    r = c.get(f"/ui/login?code={code}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/tenants/contoso"
    assert "licsync_token=" in r.headers["set-cookie"] and code not in r.headers["location"]
    assert c.get("/ui/tenants/contoso").status_code == 200
    again = env.make_client().get(f"/ui/login?code={code}", follow_redirects=False)
    assert again.status_code == 401 and "licsync_token" not in again.headers.get("set-cookie", "")


def test_sign_out_is_a_post_with_its_csrf_token(env: Env) -> None:
    c = env.make_client()
    csrf = _csrf(c)
    assert c.post("/ui/login", content=f"token={env.tokens['admin']}&csrf={csrf}", headers=FORM,
                  follow_redirects=False).status_code == 303
    r = c.get("/ui/logout", follow_redirects=False)
    assert r.status_code == 405 and "licsync_token" not in r.headers.get("set-cookie", "")
    assert c.get("/ui/tenants/contoso").status_code == 200  # still signed in: the GET changed nothing
    assert c.post("/ui/logout", content="", headers=FORM).status_code == 403  # no CSRF token
    assert c.get("/ui/tenants/contoso").status_code == 200
    r = c.post("/ui/logout", content=f"csrf={csrf}", headers=FORM, follow_redirects=False)
    assert r.status_code == 303 and 'licsync_token=""' in r.headers["set-cookie"]


# ------------------------------------------------------------------ 11: the Host header

def test_redirects_do_not_reflect_the_host_header(env: Env) -> None:
    c = env.make_client()
    r = c.get("/api/v1/me/", headers={"Host": "evil.example"} | bearer(env.tokens["admin"]), follow_redirects=False)
    assert r.status_code in (307, 404)
    assert "evil.example" not in r.headers.get("location", "")
    assert r.headers.get("location", "/").startswith("/")


def test_with_a_public_url_unknown_hosts_are_refused_and_redirects_point_there(env: Env) -> None:
    c = env.make_client(settings=settings_with({"public_url": "https://licsync.example.com"}))
    assert c.get("/ui/login", headers={"Host": "evil.example"}).status_code == 400
    assert c.get("/api/v1/me", headers={"Host": "evil.example"} | bearer(env.tokens["admin"])).status_code == 400
    assert c.get("/healthz", headers={"Host": "10.1.2.3:8080"}).status_code == 200  # probes reach the pod's address
    r = c.get("/", headers={"Host": "licsync.example.com"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "https://licsync.example.com/ui/login"
    r = c.get("/api/v1/me/", headers={"Host": "licsync.example.com:443"} | bearer(env.tokens["admin"]),
              follow_redirects=False)
    assert r.status_code in (307, 404) and r.headers.get("location", "https://licsync.example.com/").startswith(
        "https://licsync.example.com/")


# ------------------------------------------------------------------ 12: /metrics

def test_metrics_name_no_tenant_to_a_stranger(env: Env) -> None:
    r = env.make_client().get("/metrics")
    assert r.status_code == 200 and 'tenant="t1"' in r.text
    assert "contoso" not in r.text and "fabrikam" not in r.text


def test_metrics_behind_their_own_token(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LICSYNC_TEST_METRICS_TOKEN", "m" * 40)
    c = env.make_client(settings=settings_with({"metrics_token": "env:LICSYNC_TEST_METRICS_TOKEN"}))
    for headers in ({}, bearer("wrong"), bearer(env.tokens["admin"])):
        r = c.get("/metrics", headers=headers)
        assert r.status_code == 401 and "contoso" not in r.text
    r = c.get("/metrics", headers=bearer("m" * 40))
    assert r.status_code == 200 and 'tenant="contoso"' in r.text  # names, for whoever holds the token
    index = env.make_client(settings=settings_with({"metrics_token": "env:LICSYNC_TEST_METRICS_TOKEN",
                                                    "metrics_tenant_labels": "index"}))
    r = index.get("/metrics", headers=bearer("m" * 40))
    assert r.status_code == 200 and "contoso" not in r.text and 'tenant="t2"' in r.text


def test_the_metrics_token_is_a_reference_never_a_value() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        settings_with({"metrics_token": "plain-secret"})


# ------------------------------------------------------------------ 7: database errors are logged without their SQL

def test_a_database_error_is_a_500_logged_by_its_class_only(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sqlalchemy.exc import DataError

    from licsync import service

    def fail(*_a: Any, **_k: Any) -> Any:
        raise DataError("SELECT * FROM seat WHERE holder = %(holder)s", {"holder": "secret-param-value"},
                        ValueError("invalid byte sequence near secret-param-value"))

    monkeypatch.setattr(service, "access_decision", fail)
    c = env.make_client()
    r = c.get("/api/v1/tenants/contoso/access/u-ann", headers=bearer(env.tokens["platform"]))
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "database_error" in logged and "ValueError" in logged
    assert "secret-param-value" not in logged and "SELECT" not in logged


def test_cookies_are_secure_behind_a_trusted_tls_proxy_only(env: Env) -> None:
    proto = {"X-Forwarded-Proto": "https"}
    stranger = env.make_client().get("/ui/login", headers=proto)  # the peer is no trusted proxy
    assert "licsync_csrf=" in stranger.headers["set-cookie"] and "Secure" not in stranger.headers["set-cookie"]
    c = env.make_client(settings=settings_with({"trusted_proxies": ["0.0.0.0/0", "::/0"]}))
    trusted = c.get("/ui/login", headers=proto)
    assert "Secure" not in trusted.headers["set-cookie"]  # TestClient's peer is "testclient", no address
    https = env.make_client(settings=settings_with({"public_url": "https://licsync.example.com"}))
    r = https.get("/ui/login", headers={"Host": "licsync.example.com"})
    assert "Secure" in r.headers["set-cookie"]
