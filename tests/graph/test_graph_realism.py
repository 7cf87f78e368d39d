"""The emulator with a real tenant's behaviour switched on (``Realism``), through GraphClient.

Small tenants, short latencies: each test runs in about a second.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest

from licsync.errors import DeltaTokenExpired
from licsync.graph.client import GraphClient
from licsync.graph.emulator_limits import Realism, budget_for
from licsync.graph.fullread import PAUSE_SECONDS, SHARD_PREFIXES, AdaptiveLimit, read_shards
from licsync.graph.status import error_for_response
from tests.graph.conftest import GraphEnv

T = TypeVar("T")


def run(env: GraphEnv, use: Callable[[GraphClient], Awaitable[T]], **config: Any) -> T:
    async def go() -> T:
        client = env.client(**config)
        try:
            return await use(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


async def collect(gen: Any) -> list[Any]:
    return [x async for x in gen]


def test_latency_per_endpoint_with_jitter(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(10, seed=1)
    graph_env.tenant.realism = Realism(latency={"count": 0.2}, default_latency=0.0, jitter=0.25, seed=3)

    async def use(c: GraphClient) -> tuple[float, float]:
        await c.user_count()  # the token round trip is not measured
        t0 = time.perf_counter()
        await c.user_count()
        t1 = time.perf_counter()
        await collect(c.user_pages())
        return t1 - t0, time.perf_counter() - t1

    counted, listed = run(graph_env, use)
    assert 0.15 <= counted < 0.4  # 0.2 s ± 25 %
    assert listed < 0.1  # the other endpoints answer at once


def test_delta_pages_hold_200_whatever_prefer_says(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(450, seed=1)
    graph_env.tenant.page_size = 999
    graph_env.tenant.realism = Realism()
    pages = run(graph_env, lambda c: collect(c.delta_pages(None)), page_size=999)
    assert [len(p.rows) for p in pages] == [200, 200, 50]


def test_latest_delta_link_keeps_select_and_reports_only_later_changes(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    ids = d.add_users(30, seed=1)
    link = run(graph_env, lambda c: c.latest_delta_link())
    d.disable(ids[3])
    d.update_user(ids[4], officeLocation="B2")  # not selected: never reported
    pages = run(graph_env, lambda c: collect(c.delta_pages(link)))
    rows = [r for p in pages for r in p.rows]
    assert [(r.id, r.account_enabled) for r in rows] == [(ids[3], False)]


def test_user_shards_and_count(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    d.add_users(300, seed=1)
    d.add_user(userPrincipalName="Zed.O'Neil@contoso.example")

    async def use(c: GraphClient) -> tuple[int, int, list[int], int]:
        total = await c.user_count()
        z = await c.user_count("z")
        pages = await collect(c.user_pages("z", top=5))
        quoted = await collect(c.user_pages("zed.o'"))
        assert all(link for _rows, link in pages[:-1]) and pages[-1][1] is None
        resumed = await collect(c.user_pages("z", top=5, resume=pages[1][1]))
        assert [[u.id for u in rows] for rows, _l in resumed] == [[u.id for u in rows] for rows, _l in pages[2:]]
        return total, z, [len(p) for p, _l in pages], len(quoted[0][0])

    total, z, sizes, quoted = run(graph_env, use)
    assert total == 301 and sum(sizes) == z and max(sizes) == 5 and quoted == 1


def test_count_needs_consistency_level_and_filters_are_limited(graph_env: GraphEnv) -> None:
    srv, t = graph_env.server, graph_env.tenant
    token = run(graph_env, lambda c: asyncio.to_thread(c._tokens.get_token))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(srv.ca_bundle))) as http:
        plain = http.get(f"{srv.graph_url}/users/$count", headers=headers)
        bad = http.get(f"{srv.graph_url}/users", params={"$filter": "endsWith(mail,'x')"}, headers=headers)
        top = http.get(f"{srv.graph_url}/users", params={"$top": "5000"}, headers=headers)
    assert plain.status_code == 400 and "ConsistencyLevel" in plain.text
    assert bad.status_code == 400
    assert top.status_code == 200 and t.stats["users"] == 2


def test_get_user_is_none_once_deleted(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    a, b = d.add_users(2, seed=1)
    d.soft_delete(b)
    got = run(graph_env, lambda c: asyncio.gather(c.get_user(a), c.get_user(b)))
    assert got[0] is not None and got[0].id == a and got[0].account_enabled is True
    assert got[1] is None


def test_resource_units_throttle_headers_then_429_storm_recovers(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(40, seed=1)
    graph_env.tenant.realism = Realism(budget=10, window=1.0)
    seen: list[tuple[int, str | None, str | None]] = []

    async def use(c: GraphClient) -> int:
        original = c._observe

        def spy(resp: httpx.Response) -> None:
            seen.append(
                (
                    resp.status_code,
                    resp.headers.get("x-ms-resource-unit"),
                    resp.headers.get("x-ms-throttle-limit-percentage"),
                )
            )
            original(resp)

        c._observe = spy  # type: ignore[method-assign]
        pages = await collect(c.user_pages(top=2))  # 20 pages, 1 unit each, 10 allowed a second
        return sum(len(p) for p, _link in pages)

    client_stats: dict[str, Any] = {}

    async def go(c: GraphClient) -> int:
        n = await use(c)
        client_stats.update(vars(c.stats))
        return n

    assert run(graph_env, go) == 40
    assert all(unit == "1" for _s, unit, _p in seen), seen  # GET users with $select costs 1
    warned = [float(p) for s, _u, p in seen if s == 200 and p]
    assert warned and min(warned) >= 80  # the header appears from 80 % on
    storm = [s for s, _u, p in seen if s == 429]
    assert storm and all(p == "100" for s, _u, p in seen if s == 429)
    assert client_stats["throttled"] == len(storm) and client_stats["throttle_peak"] == 100
    assert graph_env.tenant.stats["throttled"] == len(storm)


def test_budget_follows_tenant_size() -> None:
    assert (budget_for(10), budget_for(200), budget_for(1_000_000)) == (3_500, 5_000, 8_000)


def test_sign_in_activity_is_paced_and_uses_successful_and_non_interactive(graph_env: GraphEnv) -> None:
    d = graph_env.tenant.directory
    a, b, c_, *_ = d.add_users(6, seed=1, signed_in_fraction=0)
    d.set_sign_in(a, datetime(2026, 1, 1, tzinfo=UTC), non_interactive=datetime(2026, 3, 1, tzinfo=UTC))
    d.set_sign_in(b, datetime(2026, 2, 1, tzinfo=UTC), failed=datetime(2026, 5, 1, tzinfo=UTC))
    d.set_sign_in(c_, None, non_interactive=datetime(2026, 4, 1, tzinfo=UTC))
    graph_env.tenant.realism = Realism(sign_in_per_minute=2, sign_in_window=60.0)
    sleeps = graph_env.sleeps

    async def use(c: GraphClient) -> dict[str, datetime | None]:
        # The client's own pace (6 a minute, ie. one each 10 s) is stricter than nothing, but
        # looser than this tenant's 2 a minute: the third request meets a 429 and its Retry-After.
        out: dict[str, datetime | None] = {}
        c._max_retry_after = 0.0
        try:
            async for pairs in c.users_sign_in_activity():
                out.update(pairs)
        except Exception as exc:
            out["error"] = exc  # type: ignore[assignment]
        return out

    got = run(graph_env, use, page_size=2, sign_in_requests_per_minute=600)
    assert got[a] == datetime(2026, 3, 1, tzinfo=UTC)  # the later of successful and non-interactive
    assert got[b] == datetime(2026, 2, 1, tzinfo=UTC)  # a failed attempt is no activity
    assert got[c_] == datetime(2026, 4, 1, tzinfo=UTC)
    assert "max_retry_after" in str(got["error"])
    assert graph_env.tenant.stats["throttled_signIn"] == 1
    assert not sleeps  # 600 a minute: the client never had to pace itself for three requests


def test_client_paces_sign_in_reads_to_its_budget(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(6, seed=1)
    graph_env.tenant.realism = Realism(sign_in_per_minute=2)

    async def fake_sleep(seconds: float) -> None:
        graph_env.sleeps.append(seconds)
        graph_env.tenant.realism.sign_in_window = 0.001  # the minute has passed for the emulator too

    async def use(c: GraphClient) -> int:
        c._sign_in_pace._sleep = fake_sleep
        return sum([len(p) async for p in c.users_sign_in_activity()])

    assert run(graph_env, use, page_size=2, sign_in_requests_per_minute=2) == 6
    assert len(graph_env.sleeps) == 1 and 55 < graph_env.sleeps[0] <= 60  # the third waits out the minute
    assert graph_env.tenant.stats["throttled_signIn"] == 0


@pytest.mark.parametrize(
    ("mode", "status"), [("410", 410), ("syncStateInvalid", 400), ("resyncRequired", 409), ("400", 400)]
)
def test_sync_state_codes_and_410_mean_resync(graph_env: GraphEnv, mode: str, status: int) -> None:
    graph_env.tenant.directory.add_users(3, seed=1)
    link = run(graph_env, lambda c: c.latest_delta_link())
    graph_env.tenant.expire_tokens(mode)
    with pytest.raises(DeltaTokenExpired, match=f"HTTP {status}"):
        run(graph_env, lambda c: collect(c.delta_pages(link)))
    if status == 410:
        token = run(graph_env, lambda c: asyncio.to_thread(c._tokens.get_token))
        with httpx.Client(verify=ssl.create_default_context(cafile=str(graph_env.server.ca_bundle))) as http:
            resp = http.get(link, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 410 and "/users/delta?$select=id," in resp.headers["location"]


def test_any_4xx_with_a_sync_state_code_is_a_resync_but_not_401_403() -> None:
    body = b'{"error": {"code": "resyncRequired", "message": "x"}}'

    def resync(status: int, delta: bool = True) -> bool:
        error = error_for_response(status, body, {}, what="d", permission="p", delta=delta)
        return isinstance(error, DeltaTokenExpired)

    assert all(resync(s) for s in (400, 404, 409, 422))
    assert not any(resync(s) for s in (401, 403))
    assert not resync(409, delta=False)


def test_restore_with_replica_lag(graph_env: GraphEnv) -> None:
    srv, d = graph_env.server, graph_env.tenant.directory
    a, b = d.add_users(2, seed=1)
    d.soft_delete(a)
    link = run(graph_env, lambda c: c.latest_delta_link())
    d.restore(a, lag_seconds=60)
    d.disable(b)

    async def use(c: GraphClient) -> tuple[list[str], list[str], Any]:
        pages = await collect(c.delta_pages(link))
        deleted = [i for ids in await collect(c.deleted_user_ids()) for i in ids]
        return [r.id for p in pages for r in p.rows], deleted, await c.get_user(a)

    reported, deleted, by_id = run(graph_env, use)
    assert reported == [] and deleted == [] and by_id is not None  # gone from deletedItems, not yet in delta
    srv.advance(61)
    try:
        reported, _deleted, _ = run(graph_env, use)
    finally:
        srv.advance(-61)  # the clock is the shared server's
    assert reported == [a, b]


def test_send_mail_refuses_custom_headers_without_x(graph_env: GraphEnv) -> None:
    (sender,) = graph_env.tenant.directory.add_users(1, seed=1)
    message = {
        "subject": "s",
        "body": {"contentType": "Text", "content": "b"},
        "toRecipients": [{"emailAddress": {"address": "a@b.example"}}],
        "internetMessageHeaders": [{"name": "Licsync-Event", "value": "x"}],
    }
    with pytest.raises(Exception, match="InvalidInternetMessageHeader"):
        run(graph_env, lambda c: c.send_mail(sender, message))
    message["internetMessageHeaders"] = [{"name": "X-Licsync-Event", "value": "x"}]
    run(graph_env, lambda c: c.send_mail(sender, message))
    assert len(graph_env.tenant.outbox) == 1


def test_adaptive_limit_halves_pauses_and_grows_back() -> None:
    limit = AdaptiveLimit(8)
    limit.observe(0)
    assert limit.limit == 8
    limit.observe(85)
    limit.observe(85)
    assert limit.limit == 2 and not limit._pause
    limit.observe(97)
    assert limit.limit == 1 and limit._pause == PAUSE_SECONDS
    for _ in range(10):
        limit.observe(0)
    assert limit.limit == 8 and limit.lowest == 1 and not limit._pause


def test_sharded_read_slows_down_before_the_budget_runs_out(graph_env: GraphEnv) -> None:
    graph_env.tenant.directory.add_users(300, seed=1)
    graph_env.tenant.realism = Realism(default_latency=0.01, budget=40, window=5.0)
    rows: list[str] = []

    async def use(c: GraphClient) -> Any:
        stats = await read_shards(
            c, lambda _p, page, _n: rows.extend(r.id for r in page), dict.fromkeys(SHARD_PREFIXES), concurrency=8
        )
        return stats, c.stats.throttled, c.stats.throttle_peak

    stats, throttled, peak = run(graph_env, use)
    assert len(rows) == 300 and stats.pages == 36
    assert peak >= 80 and stats.lowest_concurrency < 8  # it slowed down as Graph's header rose …
    assert throttled == 0  # … and never met a 429
