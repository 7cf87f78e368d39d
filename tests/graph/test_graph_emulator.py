"""The emulator's own semantics: snapshots, change tracking, knobs, control API, process mode."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from licsync.graph.emulator import Directory, Emulator, EmulatorServer
from licsync.graph.emulator_tenant import EmulatedTenant
from licsync.graph.parse import USER_SELECT, parse_delta_page
from licsync.graph.tls import client_ssl_context
from tests.graph.conftest import GraphEnv

BASE = "https://graph.test/v1.0/users/delta"


def tenant(clock_emulator: Emulator | None = None) -> EmulatedTenant:
    return (clock_emulator or Emulator()).add_tenant()


def follow(t: EmulatedTenant, query: dict[str, str], prefer: str | None = None) -> list[Any]:
    """Run one delta round directly against the tenant (no HTTP): pages as parsed."""
    pages = []
    reply = t.delta(query, BASE, prefer)
    while True:
        assert reply.status == 200, reply.body
        page = parse_delta_page(reply.body)
        pages.append(page)
        if page.delta_link:
            return pages
        reply = t.delta({"$skiptoken": page.next_link.split("$skiptoken=")[1]}, BASE)


def token_of(link: str) -> dict[str, str]:
    return {"$deltatoken": link.split("$deltatoken=")[1]}


def test_initial_round_is_a_snapshot() -> None:
    t = tenant()
    users = t.directory.add_users(400, seed=1, disabled_fraction=0)
    first = t.delta({"$select": USER_SELECT}, BASE)
    t.directory.update_user(users[399], displayName="Changed mid-round")
    late = t.directory.add_user(displayName="Created mid-round")
    page1 = parse_delta_page(first.body)
    rest = t.delta({"$skiptoken": page1.next_link.split("$skiptoken=")[1]}, BASE)
    page2 = parse_delta_page(rest.body)
    rows = {r.id: r for r in page1.rows + page2.rows}
    assert late not in rows and rows[users[399]].display_name != "Changed mid-round"
    changes = follow(t, token_of(page2.delta_link))
    assert {r.id for p in changes for r in p.rows} == {users[399], late}


def test_select_decides_what_is_returned_and_tracked() -> None:
    t = tenant()
    uid = t.directory.add_user()
    default = orjson.loads(t.delta({}, BASE).body)["value"][0]
    assert "accountEnabled" not in default and default["id"] == uid  # Graph's default set
    pages = follow(t, {"$select": "displayName"})
    assert orjson.loads(t.delta({"$select": "displayName"}, BASE).body)["value"][0] == {
        "id": uid,
        "displayName": "User 1",
    }
    t.directory.disable(uid)  # accountEnabled not selected: not tracked
    assert [r for p in follow(t, token_of(pages[-1].delta_link)) for r in p.rows] == []


def test_latest_token_and_page_size_preference() -> None:
    t = tenant()
    t.directory.add_users(50, seed=2)
    reply = orjson.loads(t.delta({"$select": USER_SELECT, "$deltatoken": "latest"}, BASE).body)
    assert reply["value"] == [] and "@odata.deltaLink" in reply and "@odata.nextLink" not in reply
    new = t.directory.add_user()
    changes = follow(t, token_of(reply["@odata.deltaLink"]))
    assert [r.id for p in changes for r in p.rows] == [new]
    sizes = [len(p.rows) for p in follow(t, {"$select": USER_SELECT}, prefer="odata.maxpagesize=20")]
    assert sizes == [20, 20, 11]


def test_soft_deletes_expire_after_thirty_days() -> None:
    emulator = Emulator()
    t = emulator.add_tenant()
    uid = t.directory.add_user()
    t.directory.soft_delete(uid)
    assert [u["id"] for u, _at in t.directory.soft_deleted()] == [uid]
    emulator.advance(timedelta(days=25))
    link = follow(t, {"$select": USER_SELECT, "$deltatoken": "latest"})[-1].delta_link
    emulator.advance(timedelta(days=6))  # 31 days after the delete; the token is 6 days old
    assert t.directory.soft_deleted() == [] and t.directory.state(uid) == "hard"
    [row] = [r for p in follow(t, token_of(link)) for r in p.rows]
    assert (row.id, row.removed) == (uid, "deleted")
    with pytest.raises(KeyError):
        t.directory.restore(uid)


def test_removed_in_initial_round() -> None:
    t = tenant()
    a, b = t.directory.add_users(2, seed=3)
    t.directory.soft_delete(a)
    t.removed_in_initial = True
    rows = {r.id: r.removed for p in follow(t, {"$select": USER_SELECT}) for r in p.rows}
    assert rows == {a: "changed", b: None}


def test_synthetic_users_are_deterministic_and_fast() -> None:
    start = time.perf_counter()
    d = Directory()
    ids = d.add_users(100_000, seed=42, disabled_fraction=0.05, guest_fraction=0.02)
    assert time.perf_counter() - start < 3.0
    assert len(set(ids)) == 100_000 and Directory().add_users(5, seed=42) == ids[:5]
    disabled = sum(1 for u in d.active_users() if not u["accountEnabled"])
    assert 4_000 < disabled < 6_000
    assert 1_500 < sum(1 for u in d.active_users() if u["userType"] == "Guest") < 2_500
    plain = Directory()
    plain.add_users(100, seed=1)  # by default: enabled members only
    assert all(u["accountEnabled"] and u["userType"] == "Member" for u in plain.active_users())


def test_prerendered_pages_equal_rendered_ones() -> None:
    t = tenant()
    t.directory.add_users(450, seed=4)
    plain = [t_.rows for t_ in follow(t, {"$select": USER_SELECT})]
    assert t.directory.prerender(page_size=200) == 3
    fast = [t_.rows for t_ in follow(t, {"$select": USER_SELECT})]
    assert fast == plain
    t.directory.add_user()  # any change drops the rendering
    assert sum(len(rows) for rows in [p.rows for p in follow(t, {"$select": USER_SELECT})]) == 451


def test_bad_tokens_are_refused() -> None:
    t = tenant()
    assert t.delta({"$deltatoken": "garbage"}, BASE).status == 400
    assert t.delta({"$skiptoken": "garbage"}, BASE).status == 400
    link = follow(t, {"$select": USER_SELECT})[-1].delta_link
    other = tenant()
    assert b"syncStateNotFound" in other.delta(token_of(link), BASE).body
    skip = t.delta({"$select": USER_SELECT}, BASE)  # a token of one kind is not accepted as another
    assert t.delta({"$deltatoken": orjson.loads(skip.body)["@odata.deltaLink"].split("=")[1]}, BASE).status == 200
    t.directory.add_users(2, seed=1)
    nxt = orjson.loads(t.users({"$top": "1"}, "https://g/v1.0/users", None).body)["@odata.nextLink"]
    assert t.delta({"$deltatoken": nxt.split("$skiptoken=")[1]}, BASE).status == 400


def test_control_api_drives_a_tenant(graph_env: GraphEnv) -> None:
    server, t = graph_env.server, graph_env.tenant
    url = f"{server.base_url}/_emulator/{t.tenant_id}"
    with httpx.Client(verify=client_ssl_context(server.ca_bundle)) as http:
        uid = http.post(f"{url}/add_user", json={"displayName": "Via API"}).json()["result"]
        assert http.post(f"{url}/add_users", json={"n": 3, "seed": 9}).status_code == 200
        assert http.post(f"{url}/disable", json={"uid": uid}).status_code == 200
        assert http.post(f"{url}/configure", json={"page_size": 2}).status_code == 200
        assert http.post(f"{url}/throttle_next", json={"n": 1, "retry_after": 0}).status_code == 200
        assert (
            http.post(f"{url}/set_sign_in", json={"uid": uid, "when": "2026-11-01T00:00:00+00:00"}).status_code == 200
        )
        assert http.post(f"{url}/configure", json={"client_secret": "x"}).status_code == 400
        assert http.post(f"{url}/__init__", json={}).status_code == 404
        assert http.post(f"{url}/disable", json={"uid": "nobody"}).status_code == 400
        advanced = http.post(f"{server.base_url}/_emulator/_server/advance", json={"seconds": 0})
        assert advanced.status_code == 200
        assert http.get(f"{url}/stats").json() == {}
    assert t.directory.get(uid)["accountEnabled"] is False and len(t.directory) == 4
    assert t.page_size == 2 and t._throttle == (1, 0.0)


def test_user_tokens_verify_against_the_published_keys(graph_env: GraphEnv) -> None:
    server, t = graph_env.server, graph_env.tenant
    token = t.issue_user_jwt({"sub": "user-1", "aud": "api://licsync", "roles": ["tenant-admin"]})
    with httpx.Client(verify=client_ssl_context(server.ca_bundle)) as http:
        config = http.get(f"{server.authority}/{t.tenant_id}/v2.0/.well-known/openid-configuration").json()
        keys = http.get(config["jwks_uri"]).json()["keys"]
    key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="api://licsync", issuer=config["issuer"])
    assert claims["sub"] == "user-1" and claims["tid"] == t.tenant_id


def test_runs_as_a_process(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "licsync.graph.emulator", "--users", "25", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            info = orjson.loads(proc.stdout.readline())
            with httpx.Client(verify=client_ssl_context(Path(info["ca_bundle"]))) as http:
                token = http.post(
                    f"{info['authority']}/{info['tenant_id']}/oauth2/v2.0/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": info["client_id"],
                        "client_secret": info["client_secret"],
                        "scope": f"{info['base_url']}/.default",
                    },
                ).json()
                page = http.get(
                    f"{info['graph_url']}/users/delta",
                    params={"$select": "id"},
                    headers={"Authorization": f"Bearer {token['access_token']}"},
                ).json()
            assert len(page["value"]) == 25 and "@odata.deltaLink" in page
        finally:
            proc.terminate()
            assert proc.wait(timeout=15) == 0


def test_server_on_its_own_port(tmp_path: Path) -> None:
    with EmulatorServer(workdir=tmp_path, tenant_id="fixed-tenant", client_id="app", client_secret="s") as srv:
        config = srv.tenant_config("fabrikam", secret_env="LICSYNC_TEST_EMULATOR_SECRET")
        assert config["client_secret"] == "env:LICSYNC_TEST_EMULATOR_SECRET"
        assert srv.graph_url.startswith("https://127.0.0.1:") and srv.tenant_id == "fixed-tenant"
        assert srv.ca_bundle.is_file()
