"""Sync cycles against an emulator that behaves like a real tenant (latency on, small tenants):
the parallel full read, its fallback, confirmation of purges, replica lag and sync resets.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import directory_read
from licsync.config import Settings
from licsync.db.models import DirectoryChange, FullReadProgress
from licsync.errors import TransientError
from licsync.graph.emulator_limits import Realism
from licsync.sync import CycleResult, run_cycle
from tests.graph.conftest import GraphEnv
from tests.test_sync import NOW, enroll, mirror, open_seats, state

LATENCY = 0.01  # a real page costs 200–350 ms; a twentieth of that keeps these tests fast


def settings_for(env: GraphEnv, url: str, **tenant: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "tenant": [
                env.server.tenant_config(
                    "contoso",
                    tenant=env.tenant,
                    **{"max_retries": 6, "full_read": "parallel", "read_concurrency": 4, **tenant},
                )
            ],
            "seats": {"mass_free_threshold": 500, "mass_free_fraction": 1.0},
        }
    )


def cycle(env: GraphEnv, settings: Settings, engine: Engine, *, minutes: int = 0, **kw: Any) -> CycleResult:
    async def go() -> CycleResult:
        client = env.client(max_retries=settings.tenant[0].max_retries)
        try:
            return await run_cycle(
                settings, settings.tenant[0], engine, now=NOW + timedelta(minutes=minutes), client=client, **kw
            )
        finally:
            await client.aclose()

    return asyncio.run(go())


def graph_paths(env: GraphEnv) -> list[str]:
    return [target.split("?")[0] for _m, target, _ua in env.tenant.requests]


@pytest.fixture
def env(graph_env: GraphEnv) -> GraphEnv:
    graph_env.tenant.realism = Realism.graph(LATENCY, seed=1)
    graph_env.tenant.page_size = 50  # delta pages at this N; /users pages hold what $top asks
    return graph_env


def test_parallel_full_read_then_delta_from_the_latest_link(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(600, seed=2, disabled_fraction=0.1)
    enroll(engine, ids[:30])
    settings = settings_for(env, db_url)
    r = cycle(env, settings, engine)
    assert r.kind == "full" and r.counts["seen"] == 600 and r.counts["created"] == 600
    assert not r.counts.get("shard_fallbacks") and r.throttled == 0  # a clean run never meets a 429
    paths = graph_paths(env)
    assert paths.count("/v1.0/users/delta()") + paths.count("/v1.0/users/delta") == 1  # $deltatoken=latest only
    assert "/v1.0/users/$count" in paths and paths.count("/v1.0/users") == 36  # one first page per shard
    assert 1 < env.tenant.stats["max_inflight"] <= 4  # side by side, within read_concurrency
    m = mirror(engine)
    assert len(m) == 600 and sum(1 for v in m.values() if v[0] is False) == sum(
        1 for u in d.active_users() if not u["accountEnabled"]
    )
    assert len(open_seats(engine)) == sum(1 for u in ids[:30] if d.get(u)["accountEnabled"])  # type: ignore[index]
    # Later rounds run delta from the link taken before the read: one request when nothing changed.
    env.tenant.requests.clear()
    r = cycle(env, settings, engine, minutes=15)
    assert r.kind == "delta" and r.counts.get("entries", 0) == 0
    assert graph_paths(env) == ["/v1.0/users/delta", "/v1.0/directory/deletedItems/graph.user"]
    d.disable(ids[40])
    r = cycle(env, settings, engine, minutes=30)
    assert r.counts["disabled"] == 1 and mirror(engine)[ids[40]][0] is False


def test_shards_that_do_not_add_up_fall_back_to_the_delta_walk(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(150, seed=3, disabled_fraction=0)
    settings = settings_for(env, db_url)
    cycle(env, settings, engine)
    odd = d.add_user(userPrincipalName="_svc-backup@contoso.example")  # no shard covers "_"
    d.hard_delete(ids[0])
    enroll(engine, [odd, ids[1]])
    r = cycle(env, settings, engine, minutes=15, full=True)
    assert r.counts["shard_fallbacks"] == 1 and r.counts["seen"] == 150
    m = mirror(engine)
    assert m[odd][1] == "none" and m[ids[0]][1] == "hard"
    assert sum(1 for v in m.values() if v[1] == "none") == 150  # nothing swept that the walk returned
    assert set(open_seats(engine)) == {odd, ids[1]}
    paths = graph_paths(env)
    assert paths.count("/v1.0/users/delta()") >= 1  # the walk ran after the shards


def test_a_purge_is_confirmed_and_a_lagging_restore_comes_back(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(60, seed=4, disabled_fraction=0)
    enroll(engine, ids[:5])
    settings = settings_for(env, db_url)
    cycle(env, settings, engine)
    d.soft_delete(ids[0])
    d.soft_delete(ids[1])
    r = cycle(env, settings, engine, minutes=15)
    assert r.counts["soft_deleted"] == 2 and set(open_seats(engine)) == set(ids[2:5])
    # ids[0] is restored: it leaves deletedItems at once, but delta reports the restore only in a minute.
    d.restore(ids[0], lag_seconds=60)
    env.tenant.requests.clear()
    r = cycle(env, settings, engine, minutes=30)
    m = mirror(engine)
    assert m[ids[0]][1] == "none"  # confirmed with GET /users/{id}: 200, back — not recorded as purged
    assert r.counts["confirmed_back"] == 1 and r.counts["restored"] == 1
    assert f"/v1.0/users/{ids[0]}" in graph_paths(env)
    assert ids[0] in open_seats(engine)
    with Session(engine) as s:
        kinds = [c.change for c in s.exec(select(DirectoryChange).where(DirectoryChange.user_id == ids[0])).scalars()]  # type: ignore[call-overload]
    assert "hard_deleted" not in kinds


def test_unseen_and_unlisted_user_is_confirmed_gone_with_a_404(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(40, seed=5, disabled_fraction=0)
    settings = settings_for(env, db_url)
    cycle(env, settings, engine)
    d.hard_delete(ids[3])
    env.tenant.requests.clear()
    r = cycle(env, settings, engine, minutes=15, full=True)
    assert r.counts["confirmed_gone"] == 1 and mirror(engine)[ids[3]][1] == "hard"
    assert f"/v1.0/users/{ids[3]}" in graph_paths(env)


@pytest.mark.parametrize("mode", ["410", "syncStateInvalid", "resyncRequired"])
def test_a_sync_reset_or_state_code_resyncs_in_full(env: GraphEnv, engine: Engine, db_url: str, mode: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(80, seed=6, disabled_fraction=0)
    settings = settings_for(env, db_url)
    cycle(env, settings, engine)
    d.soft_delete(ids[0])
    env.tenant.expire_tokens(mode)
    r = cycle(env, settings, engine, minutes=15)
    assert r.resynced and r.kind == "full" and mirror(engine)[ids[0]][1] == "soft"
    assert cycle(env, settings, engine, minutes=30).kind == "delta"


def test_a_429_storm_is_waited_out_and_the_read_completes(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    d.add_users(200, seed=7, disabled_fraction=0)
    env.tenant.realism = Realism.graph(LATENCY, budget=20, window=0.5, seed=2)
    r = cycle(env, settings_for(env, db_url), engine)
    assert r.counts["seen"] == 200 and not r.counts.get("shard_fallbacks")
    assert r.throttled > 0 and env.tenant.stats["throttled"] == r.throttled  # each 429 retried after Retry-After


def test_a_failure_mid_read_frees_nothing_and_the_next_cycle_completes(
    env: GraphEnv, engine: Engine, db_url: str
) -> None:
    d = env.tenant.directory
    ids = d.add_users(120, seed=8, disabled_fraction=0)
    enroll(engine, ids[:20])
    settings = settings_for(env, db_url, max_retries=0)
    cycle(env, settings, engine)
    seats, before = open_seats(engine), mirror(engine)
    for uid in ids[:10]:
        d.hard_delete(uid)

    def fail_from_the_fifth_page(pages: int, _users: int) -> None:
        if pages == 5:  # of 36 shards: Graph goes away mid-read
            env.tenant.fail_next(1000, status=503)

    with pytest.raises(TransientError):
        cycle(env, settings, engine, minutes=15, full=True, progress=fail_from_the_fifth_page)
    assert open_seats(engine) == seats and mirror(engine) == before  # never a seat freed on partial data
    env.tenant.clear_faults()
    r = cycle(env, settings, engine, minutes=30, full=True)
    assert r.counts["hard_deleted"] == 10 and set(open_seats(engine)) == set(ids[10:20])
    assert state(engine).consecutive_failures == 0  # type: ignore[union-attr]


def test_a_read_that_fails_at_90_percent_resumes_from_its_last_chunk(
    env: GraphEnv, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_read, "CHUNK_USERS", 40)
    d = env.tenant.directory
    ids = d.add_users(700, seed=9, disabled_fraction=0)
    enroll(engine, ids[:20])
    settings = settings_for(env, db_url, max_retries=0)
    cycle(env, settings, engine)
    seats = open_seats(engine)
    for uid in ids[:10]:
        d.hard_delete(uid)
    for uid in ids[100:400]:
        d.update_user(uid, displayName="Renamed")

    def fail_at_90_percent(pages: int, _users: int) -> None:
        if pages == 32:  # of 36 shards
            env.tenant.fail_next(1000, status=503)

    with pytest.raises(TransientError):
        cycle(env, settings, engine, minutes=15, full=True, progress=fail_at_90_percent)
    assert open_seats(engine) == seats  # nothing freed: the sweep never ran
    m = mirror(engine)
    assert all(m[u][1] == "none" for u in ids[:10])  # not swept on partial data
    renamed = sum(1 for u in ids[100:400] if m[u][2] == "Renamed")
    assert renamed > 0  # the committed chunks stay
    with Session(engine) as s:
        progress = s.get(FullReadProgress, "contoso")
        assert progress is not None and 25 <= sum(1 for v in progress.shards.values() if v == "done") < 36  # type: ignore[union-attr]
        done = sum(1 for v in progress.shards.values() if v == "done")  # type: ignore[union-attr]

    env.tenant.clear_faults()
    env.tenant.requests.clear()
    r = cycle(env, settings, engine, minutes=30, full=True)
    paths = graph_paths(env)
    assert paths.count("/v1.0/users") == 36 - done  # only the shards not committed yet
    assert "/v1.0/users/delta" not in paths and "/v1.0/users/$count" not in paths  # the first read's link and count
    assert r.counts["hard_deleted"] == 10 and r.counts["seen"] == 690
    assert set(open_seats(engine)) == set(ids[10:20])
    assert all(v[2] == "Renamed" for u, v in mirror(engine).items() if u in set(ids[100:400]))
    with Session(engine) as s:
        assert s.get(FullReadProgress, "contoso") is None
    # Later rounds run delta from the link the interrupted read took first.
    d.disable(ids[500])
    assert cycle(env, settings, engine, minutes=45).counts["disabled"] == 1
