"""GraphClient against the emulator over loopback HTTPS, with the real msgraph-sdk and MSAL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from licsync.errors import DeltaTokenExpired, PermanentError, TransientError
from licsync.graph.client import DeltaPage, GraphClient
from tests.graph.conftest import GraphEnv


async def round_pages(client: GraphClient, link: str | None = None) -> list[DeltaPage]:
    return [p async for p in client.delta_pages(link)]


def run_round(env: GraphEnv, link: str | None = None, **config: Any) -> tuple[list[DeltaPage], GraphClient]:
    async def go() -> tuple[list[DeltaPage], GraphClient]:
        client = env.client(**config)
        try:
            return await round_pages(client, link), client
        finally:
            await client.aclose()

    return asyncio.run(go())


def ids(pages: list[DeltaPage]) -> list[str]:
    return [r.id for p in pages for r in p.rows]


def test_initial_round_pages_all_users(graph_env: GraphEnv) -> None:
    created = set(graph_env.tenant.directory.add_users(1_050, seed=1))
    pages, client = run_round(graph_env)
    assert len(pages) == 6 and [len(p.rows) for p in pages] == [200] * 5 + [50]
    assert set(ids(pages)) == created and len(ids(pages)) == 1_050
    assert all(p.next_link for p in pages[:-1]) and pages[-1].delta_link and not pages[-1].next_link
    assert (client.stats.requests, client.stats.pages, client.stats.retries) == (6, 6, 0)
    # the SDK's /users/delta() form, with $select (accountEnabled included) on the first request only
    graph = [target for _m, target, _ua in graph_env.tenant.requests]
    assert graph[0].startswith("/v1.0/users/delta()?$select=") and "accountEnabled" in graph[0]
    assert all("$select" not in t and "$skiptoken=" in t for t in graph[1:])
    assert graph_env.tenant.stats["authorization_header"] == 6  # a valid bearer on every request
    assert all("licsync/" in ua for _m, _t, ua in graph_env.tenant.requests)  # through the SDK middleware
    assert graph_env.tenant.stats["token"] == 1  # one token for the whole round


def test_rows_carry_selected_properties(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    uid = d.add_user(
        userPrincipalName="ann@contoso.example",
        mail=None,
        displayName="Ann",
        givenName="Ann",
        surname="Lee",
        employeeId="E7",
        userType="Member",
        accountEnabled=False,
    )
    [page], _ = run_round(graph_env)
    row = page.rows[0]
    assert (row.id, row.upn, row.mail, row.employee_id, row.account_enabled) == (
        uid,
        "ann@contoso.example",
        None,
        "E7",
        False,
    )


def test_empty_pages_are_followed(graph_env: GraphEnv) -> None:
    created = set(graph_env.tenant.directory.add_users(500, seed=2))
    graph_env.tenant.empty_page_every = 2
    pages, _ = run_round(graph_env)
    assert any(not p.rows and p.next_link for p in pages)
    assert set(ids(pages)) == created


def test_replayed_users_appear_twice(graph_env: GraphEnv) -> None:
    created = set(graph_env.tenant.directory.add_users(600, seed=3))
    graph_env.tenant.replay_every = 2
    pages, _ = run_round(graph_env)
    seen = ids(pages)
    assert len(seen) > len(set(seen)) and set(seen) == created


def test_incremental_round_gives_exactly_the_changes(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    users = d.add_users(300, seed=4, disabled_fraction=0)
    pages, _ = run_round(graph_env)
    link = pages[-1].delta_link
    d.soft_delete(users[0])
    d.hard_delete(users[1])
    d.disable(users[2])
    d.update_user(users[3], displayName="Renamed")
    d.update_user(users[4], jobTitle="Not selected, not tracked")
    d.set_sign_in(users[5], None)  # sign-ins are not directory changes
    new = d.add_user(displayName="New")
    d.soft_delete(users[6])
    d.hard_delete(users[6])  # soft, then hard: reported once, as deleted
    pages, _ = run_round(graph_env, link)
    rows = {r.id: r for p in pages for r in p.rows}
    assert set(rows) == {users[0], users[1], users[2], users[3], users[6], new}
    assert rows[users[0]].removed == "changed" and rows[users[1]].removed == "deleted"
    assert rows[users[6]].removed == "deleted"
    assert rows[users[2]].account_enabled is False and rows[users[2]].removed is None
    assert rows[users[3]].display_name == "Renamed" and rows[users[3]].upn  # full selected properties
    # nothing changed since: the next incremental round is empty but still ends with a deltaLink
    again, _ = run_round(graph_env, pages[-1].delta_link)
    assert ids(again) == [] and again[-1].delta_link


def test_restore_and_reenable_come_back_as_users(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    a, b = d.add_users(2, seed=5, disabled_fraction=0)
    d.soft_delete(a)
    d.disable(b)
    pages, _ = run_round(graph_env)
    assert ids(pages) == [b]  # the initial round lists active users only, disabled ones included
    d.restore(a)
    d.enable(b)
    pages, _ = run_round(graph_env, pages[-1].delta_link)
    rows = {r.id: r for p in pages for r in p.rows}
    assert rows[a].removed is None and rows[b].account_enabled is True


def test_429_retry_after_is_honoured(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(250, seed=6)
    graph_env.tenant.throttle_next(1, retry_after=1)
    start = time.monotonic()
    pages, client = run_round(graph_env)
    assert time.monotonic() - start >= 1.0
    assert graph_env.sleeps == [1.0]
    assert len(ids(pages)) == 250
    assert (client.stats.throttled, client.stats.retries, client.stats.waited_seconds) == (1, 1, 1.0)
    assert client.stats.requests == 3  # 429 + two pages


def test_retry_after_zero_retries_at_once(graph_env: GraphEnv) -> None:
    graph_env.tenant.throttle_next(2, retry_after=0)
    pages, client = run_round(graph_env)
    assert graph_env.sleeps == [0.0, 0.0] and client.stats.throttled == 2 and pages[-1].delta_link


def test_retry_after_beyond_the_bound_is_not_waited(graph_env: GraphEnv) -> None:
    graph_env.tenant.throttle_next(1, retry_after=900)
    with pytest.raises(TransientError) as info:
        run_round(graph_env, max_retry_after="5m")
    assert info.value.retry_after == 900 and graph_env.sleeps == []


@pytest.mark.parametrize("status", [503, 504, 500, 502])
def test_5xx_bursts_are_retried(graph_env: GraphEnv, status: int) -> None:
    graph_env.tenant.directory.add_users(10, seed=7)
    graph_env.tenant.fail_next(3, status=status)
    pages, client = run_round(graph_env)
    assert len(ids(pages)) == 10 and client.stats.retries == 3 and len(graph_env.sleeps) == 3
    assert all(0 < s < 0.1 for s in graph_env.sleeps)  # backoff base lowered for the test


def test_persistent_page_failure_gives_up(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(450, seed=8)
    graph_env.tenant.fail_page(2, status=500)
    with pytest.raises(TransientError, match="HTTP 500"):
        run_round(graph_env, max_retries=3)
    assert graph_env.sleeps and len(graph_env.sleeps) == 3
    assert graph_env.tenant.stats["delta"] == 1 + 4  # page 1, then page 2 four times


def test_backoff_grows_and_is_capped() -> None:
    client = GraphClient.__new__(GraphClient)
    client.backoff_base, client.backoff_cap = 1.0, 60.0
    delays = [client._backoff(a) for a in range(10)]
    assert 0.5 <= delays[0] <= 1.0 and 4.0 <= delays[3] <= 8.0
    assert all(d <= 60.0 for d in delays) and delays[9] >= 30.0


@pytest.mark.parametrize("mode", ["400", "410"])
def test_expired_delta_token(graph_env: GraphEnv, mode: str) -> None:
    graph_env.tenant.directory.add_users(5, seed=9)
    pages, _ = run_round(graph_env)
    graph_env.tenant.expire_tokens(mode)
    with pytest.raises(DeltaTokenExpired):
        run_round(graph_env, pages[-1].delta_link)
    # a full resync issues a fresh token that works again
    pages, _ = run_round(graph_env)
    again, _ = run_round(graph_env, pages[-1].delta_link)
    assert again[-1].delta_link


def test_delta_tokens_expire_after_seven_days(graph_server: Any, graph_env: GraphEnv) -> None:
    pages, _ = run_round(graph_env)
    graph_server.advance(8 * 86400)
    try:
        with pytest.raises(DeltaTokenExpired):
            run_round(graph_env, pages[-1].delta_link)
    finally:
        graph_server.advance(-8 * 86400)


def test_malformed_page_and_missing_id_are_permanent(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(450, seed=10)
    graph_env.tenant.malformed_page(2)
    with pytest.raises(PermanentError, match="malformed page"):
        run_round(graph_env)
    graph_env.tenant.clear_faults()
    graph_env.tenant.drop_id_on_page(3)
    with pytest.raises(PermanentError, match="without id"):
        run_round(graph_env)


def test_delta_link_of_another_tenant_is_refused(graph_server: Any, graph_env: GraphEnv) -> None:
    pages, _ = run_round(graph_env)
    other = GraphEnv(graph_server, graph_server.add_tenant())
    with pytest.raises(DeltaTokenExpired):
        run_round(other, pages[-1].delta_link)


def test_connection_failures_are_retried_then_transient(graph_env: GraphEnv) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match=f"cannot connect to https://127.0.0.1:{port}/v1.0"):
        run_round(graph_env, graph_url=f"https://127.0.0.1:{port}/v1.0", max_retries=2)
    assert len(graph_env.sleeps) == 2


def test_a_graph_url_that_never_answered_is_named_after_a_few_attempts(graph_env: GraphEnv) -> None:
    """Not 44 s of silent retries (max_retries 6): three attempts, and the URL in the error."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1.0"
    with pytest.raises(TransientError) as exc:
        run_round(graph_env, graph_url=url)
    assert len(graph_env.sleeps) == 2
    assert f"cannot connect to {url} (ConnectError); gave up after 3 attempts" in str(exc.value)


def test_missing_permission_is_permanent_and_named(graph_env: GraphEnv) -> None:
    graph_env.tenant.add_app(graph_env.tenant.client_id, graph_env.tenant.client_secret, roles=["Mail.Send"])
    with pytest.raises(PermanentError, match=r"403.*User\.Read\.All"):
        run_round(graph_env)


def run_client(env: GraphEnv, coro_fn: Any, **config: Any) -> Any:
    async def go() -> Any:
        client = env.client(**config)
        try:
            return await coro_fn(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_deleted_items_paging(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    users = d.add_users(1_200, seed=11)
    for uid in users[:1_100]:
        d.soft_delete(uid)

    async def collect(client: GraphClient) -> list[list[str]]:
        return [batch async for batch in client.deleted_user_ids()]

    batches = run_client(graph_env, collect)
    assert [len(b) for b in batches] == [999, 101]
    assert {i for b in batches for i in b} == set(users[:1_100])
    first = next(t for _m, t, _a in graph_env.tenant.requests if "deletedItems" in t)
    assert "$top=999" in first and "$select=id" in first


def test_sign_in_activity(graph_env: GraphEnv) -> None:
    from datetime import UTC, datetime

    d = graph_env.tenant.directory
    users = d.add_users(1_001, seed=12, signed_in_fraction=0)
    when = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
    d.set_sign_in(users[0], when)

    async def collect(client: GraphClient) -> list[list[tuple[str, Any]]]:
        return [batch async for batch in client.users_sign_in_activity()]

    batches = run_client(graph_env, collect)
    assert [len(b) for b in batches] == [500, 500, 1]
    found = dict(p for b in batches for p in b)
    assert found[users[0]] == when and found[users[1]] is None
    graph_env.tenant.premium = False
    with pytest.raises(PermanentError, match=r"AuditLog\.Read\.All"):
        run_client(graph_env, collect)


def test_send_mail(graph_env: GraphEnv) -> None:
    sender = graph_env.tenant.directory.add_user(userPrincipalName="licsync@contoso.example")
    message = {
        "subject": "Seats at 90 %",
        "body": {"contentType": "Text", "content": "hello"},
        "toRecipients": [{"emailAddress": {"address": "it-admin@contoso.example"}}],
    }
    run_client(graph_env, lambda c: c.send_mail("licsync@contoso.example", message))
    [sent] = graph_env.tenant.outbox
    assert sent["sender_id"] == sender and sent["message"] == message
    with pytest.raises(PermanentError, match="404"):
        run_client(graph_env, lambda c: c.send_mail("nobody@contoso.example", message))
    graph_env.tenant.add_app(graph_env.tenant.client_id, graph_env.tenant.client_secret, roles=["User.Read.All"])
    with pytest.raises(PermanentError, match=r"Mail\.Send"):
        run_client(graph_env, lambda c: c.send_mail(sender, message))
    assert len(graph_env.tenant.outbox) == 1


def test_send_mail_retries_only_when_graph_surely_did_not_act(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_user(userPrincipalName="licsync@contoso.example")
    message = {"subject": "s", "toRecipients": [{"emailAddress": {"address": "a@contoso.example"}}]}
    graph_env.tenant.throttle_next(1, retry_after=0)
    run_client(graph_env, lambda c: c.send_mail("licsync@contoso.example", message))
    graph_env.tenant.fail_next(1, status=504)  # might have been delivered: the outbox decides
    with pytest.raises(TransientError):
        run_client(graph_env, lambda c: c.send_mail("licsync@contoso.example", message))
    assert len(graph_env.tenant.outbox) == 1


def test_token_endpoint_outage_is_retried_by_the_same_policy(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(5, seed=13)
    graph_env.tenant.token_endpoint_down(2)
    pages, client = run_round(graph_env)
    assert len(ids(pages)) == 5 and client.stats.retries == 2 and len(graph_env.sleeps) == 2
    assert client.stats.requests == 1  # token endpoint calls are not Graph requests
