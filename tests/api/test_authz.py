"""Who may read what: every endpoint and page × every kind of caller → 200, 401, 403 or 404."""

from __future__ import annotations

import pytest

from tests.api.conftest import Env, bearer

T = "/api/v1/tenants"
ENDPOINTS = {
    "status": f"{T}/contoso/status",
    "catalog_a": f"{T}/contoso/catalogs/cat-a/status",
    "catalog_b": f"{T}/contoso/catalogs/cat-b/status",
    "catalog_missing": f"{T}/contoso/catalogs/cat-zzz/status",
    "access": f"{T}/contoso/access/u-ann",
    "export_status": f"{T}/contoso/export/status.csv",
    "export_holders": f"{T}/contoso/export/holders.csv",
    "other_status": f"{T}/fabrikam/status",
    "other_catalog": f"{T}/fabrikam/catalogs/cat-f/status",
    "other_access": f"{T}/fabrikam/access/u-fay",
    "unknown_tenant_status": f"{T}/nowhere/status",
    "unknown_tenant_access": f"{T}/nowhere/access/u-ann",
    "unknown_tenant_catalog": f"{T}/nowhere/catalogs/cat-a/status",
    "page_tenant": "/ui/tenants/contoso",
    "page_cat_a": "/ui/tenants/contoso/catalogs/cat-a",
    "page_cat_b": "/ui/tenants/contoso/catalogs/cat-b",
    "page_other": "/ui/tenants/fabrikam",
    "page_unknown": "/ui/tenants/nowhere",
}
ALL_401 = dict.fromkeys(ENDPOINTS, 401)
OK, NO = 200, 403
EXPECTED: dict[str, dict[str, int]] = {
    "admin": {
        "status": OK, "catalog_a": OK, "catalog_b": OK, "catalog_missing": 404, "access": OK,
        "export_status": OK, "export_holders": OK, "other_status": NO, "other_catalog": NO, "other_access": NO,
        "unknown_tenant_status": NO, "unknown_tenant_access": NO, "unknown_tenant_catalog": NO,
        "page_tenant": OK, "page_cat_a": OK, "page_cat_b": OK, "page_other": NO, "page_unknown": NO,
    },
    "cat_a": {
        "status": NO, "catalog_a": OK, "catalog_b": NO, "catalog_missing": NO, "access": NO,
        "export_status": OK, "export_holders": OK, "other_status": NO, "other_catalog": NO, "other_access": NO,
        "unknown_tenant_status": NO, "unknown_tenant_access": NO, "unknown_tenant_catalog": NO,
        "page_tenant": OK, "page_cat_a": OK, "page_cat_b": NO, "page_other": NO, "page_unknown": NO,
    },
    "platform": dict.fromkeys(ENDPOINTS, NO) | {"access": OK},
    "other_admin": dict.fromkeys(ENDPOINTS, NO) | {"other_status": OK, "other_catalog": OK, "other_access": OK,
                                                   "page_other": OK},
    "other_platform": dict.fromkeys(ENDPOINTS, NO) | {"other_access": OK},
    "no_token": ALL_401,
    "bad_token": ALL_401,
    "malformed_header": ALL_401,
    "revoked": ALL_401,
    "forged_secret": ALL_401,
}


def headers_for(env: Env, who: str) -> dict[str, str]:
    t = env.tokens
    if who == "no_token":
        return {}
    if who == "bad_token":
        return bearer("lsy_0123456789abcdef_" + "x" * 43)
    if who == "malformed_header":
        return {"Authorization": f"Basic {t['admin']}"}
    if who == "forged_secret":  # a real token id with another secret
        return bearer(t["admin"][:21] + "A" * 43)
    return bearer(t[who])


CASES = [(who, ep, code) for who, row in EXPECTED.items() for ep, code in row.items()]


@pytest.mark.parametrize(("who", "endpoint", "expected"), CASES, ids=[f"{w}-{e}" for w, e, _ in CASES])
def test_matrix(shared: Env, who: str, endpoint: str, expected: int) -> None:
    assert set(EXPECTED[who]) == set(ENDPOINTS)
    r = shared.client.get(ENDPOINTS[endpoint], headers=headers_for(shared, who))
    assert r.status_code == expected, r.text[:300]
    if expected == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    if endpoint.startswith("page_"):
        assert r.headers["content-type"].startswith("text/html")
    elif expected != 200:
        assert set(r.json()) == {"error"}
        assert "Traceback" not in r.text


def test_403_does_not_say_whether_a_tenant_exists(shared: Env) -> None:
    h = bearer(shared.tokens["admin"])
    known = shared.client.get(f"{T}/fabrikam/status", headers=h)
    unknown = shared.client.get(f"{T}/nowhere/status", headers=h)
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()


def test_catalog_admin_cannot_learn_other_catalogs_exist(shared: Env) -> None:
    h = bearer(shared.tokens["cat_a"])
    other = shared.client.get(f"{T}/contoso/catalogs/cat-b/status", headers=h)
    missing = shared.client.get(f"{T}/contoso/catalogs/cat-zzz/status", headers=h)
    assert other.status_code == missing.status_code == 403
    assert other.json() == missing.json()
