"""The sync cycle end to end: the real msgraph-sdk and msal against the Graph emulator over
loopback HTTPS, into SQLite and PostgreSQL. Each delta behaviour of the foundation issue is a test.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync.config import Settings
from licsync.db.models import (
    Catalog,
    Course,
    DirectoryChange,
    DirectoryUser,
    Enrollment,
    LearnerListEntry,
    MassFreeHold,
    Seat,
    SyncCycle,
    SyncState,
)
from licsync.errors import PermanentError, TransientError
from licsync.sync import CycleResult, run_cycle
from tests.graph.conftest import GraphEnv

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def make_settings(env: GraphEnv, url: str, **seats: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "tenant": [env.server.tenant_config("contoso", tenant=env.tenant, max_retries=4)],
            "seats": {"mass_free_threshold": 500, "mass_free_fraction": 1.0, **seats},
        }
    )


def cycle(env: GraphEnv, settings: Settings, engine: Engine, *, now: datetime = NOW, **kw: Any) -> CycleResult:
    async def go() -> CycleResult:
        client = env.client(max_retries=4)
        try:
            return await run_cycle(settings, settings.tenant[0], engine, now=now, client=client, **kw)
        finally:
            await client.aclose()

    return asyncio.run(go())


def mirror(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with Session(engine) as s:
        rows = s.exec(select(DirectoryUser)).scalars().all()  # type: ignore[call-overload]
        return {u.id: (u.account_enabled, u.deleted, u.display_name) for u in rows}


def state(engine: Engine) -> SyncState | None:
    with Session(engine) as s:
        return s.get(SyncState, "contoso")


@pytest.fixture
def env(graph_env: GraphEnv) -> GraphEnv:
    return graph_env


def test_full_sync_follows_every_page_including_empty_ones_and_replays(
    env: GraphEnv, engine: Engine, db_url: str
) -> None:
    ids = env.tenant.directory.add_users(1050, seed=7, disabled_fraction=0.1)
    env.tenant.page_size = 200
    env.tenant.empty_page_every = 2
    env.tenant.replay_every = 3
    settings = make_settings(env, db_url)
    r = cycle(env, settings, engine)
    m = mirror(engine)
    assert set(m) == set(ids)
    disabled = sum(1 for u in env.tenant.directory.active_users() if not u["accountEnabled"])
    assert sum(1 for v in m.values() if v[0] is False) == disabled
    assert r.kind == "full" and r.counts["created"] == 1050 and r.summary()["disabled"] == disabled
    assert r.counts["seen"] == 1050  # replays are upserts, not new users
    st = state(engine)
    assert st is not None and st.delta_link and st.consecutive_failures == 0
    # 6 pages of users + empty pages + 1 deletedItems request
    assert r.requests >= 7


def test_incremental_round_applies_exactly_the_changes(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(300, seed=1, disabled_fraction=0)
    settings = make_settings(env, db_url)
    cycle(env, settings, engine)
    d.disable(ids[0])
    d.soft_delete(ids[1])
    d.hard_delete(ids[2])
    d.update_user(ids[3], displayName="Renamed Person")
    new = d.add_user(displayName="Newcomer")
    r = cycle(env, settings, engine, now=NOW + timedelta(minutes=15))
    assert r.kind == "delta"
    assert {k: v for k, v in r.counts.items() if k not in ("seen", "entries")} == {
        "disabled": 1,
        "soft_deleted": 1,
        "hard_deleted": 1,
        "updated": 1,
        "created": 1,
    }
    m = mirror(engine)
    assert m[ids[0]][0] is False
    assert m[ids[1]][1] == "soft"
    assert m[ids[2]][1] == "hard"
    assert m[ids[3]][2] == "Renamed Person"
    assert new in m
    with Session(engine) as s:
        changes = s.exec(
            select(DirectoryChange.user_id, DirectoryChange.change).where(DirectoryChange.cycle_id == r.cycle_id)  # type: ignore[call-overload]
        ).all()
    assert sorted(c[1] for c in changes) == ["created", "disabled", "hard_deleted", "soft_deleted", "updated"]
    # Restoring the soft-deleted user brings it back.
    d.restore(ids[1])
    r3 = cycle(env, settings, engine, now=NOW + timedelta(minutes=30))
    assert r3.counts.get("restored") == 1 and mirror(engine)[ids[1]][1] == "none"
    # A quiet round changes nothing.
    r4 = cycle(env, settings, engine, now=NOW + timedelta(minutes=45))
    assert r4.counts.get("seen", 0) == 0 and r4.plan.is_empty


def test_429_waits_for_its_retry_after(env: GraphEnv, engine: Engine, db_url: str) -> None:
    env.tenant.directory.add_users(50, seed=2)
    env.tenant.throttle_next(1, retry_after=1)
    settings = make_settings(env, db_url)
    r = cycle(env, settings, engine)
    assert 1 in env.sleeps  # the wait happened, for exactly Retry-After
    assert r.throttled == 1 and r.retries >= 1
    assert len(mirror(engine)) == 50


def test_503_bursts_are_retried(env: GraphEnv, engine: Engine, db_url: str) -> None:
    env.tenant.directory.add_users(50, seed=3)
    env.tenant.fail_next(3, status=503)
    r = cycle(env, make_settings(env, db_url), engine)
    assert r.retries >= 3 and len(mirror(engine)) == 50


@pytest.mark.parametrize("mode", ["400", "410"])
def test_expired_delta_token_is_recovered_by_a_full_resync_in_the_same_cycle(
    env: GraphEnv, engine: Engine, db_url: str, mode: str
) -> None:
    d = env.tenant.directory
    ids = d.add_users(120, seed=4, disabled_fraction=0)
    settings = make_settings(env, db_url)
    cycle(env, settings, engine)
    d.soft_delete(ids[0])
    d.hard_delete(ids[1])
    env.tenant.expire_tokens(mode)
    r = cycle(env, settings, engine, now=NOW + timedelta(days=8))
    assert r.resynced and r.kind == "full"
    m = mirror(engine)
    assert m[ids[0]][1] == "soft"  # listed under deletedItems
    assert m[ids[1]][1] == "hard"  # swept: not enumerated, not in deletedItems
    assert sum(1 for v in m.values() if v[1] == "none") == 118
    env.tenant.clear_faults()
    assert cycle(env, settings, engine, now=NOW + timedelta(days=8, minutes=15)).kind == "delta"


def test_a_round_that_fails_halfway_applies_nothing(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(900, seed=5, disabled_fraction=0)
    settings = make_settings(env, db_url)
    cycle(env, settings, engine)
    before_mirror, before_link = mirror(engine), state(engine).delta_link  # type: ignore[union-attr]
    for uid in ids[:600]:
        d.update_user(uid, displayName="Changed")
    env.tenant.page_size = 200
    env.tenant.fail_page(3, status=500)
    with pytest.raises(TransientError):
        cycle(env, settings, engine, now=NOW + timedelta(minutes=15))
    assert mirror(engine) == before_mirror
    st = state(engine)
    assert st is not None and st.delta_link == before_link and st.consecutive_failures == 1
    with Session(engine) as s:
        last = s.exec(select(SyncCycle).order_by(SyncCycle.id.desc())).scalars().first()  # type: ignore[union-attr, call-overload]
        assert last.status == "failed" and last.error
    env.tenant.clear_faults()
    r = cycle(env, settings, engine, now=NOW + timedelta(minutes=30))
    assert r.counts["updated"] == 600 and state(engine).consecutive_failures == 0  # type: ignore[union-attr]


def test_malformed_page_fails_cleanly(env: GraphEnv, engine: Engine, db_url: str) -> None:
    env.tenant.directory.add_users(500, seed=6)
    env.tenant.malformed_page(2)
    with pytest.raises(PermanentError):
        cycle(env, make_settings(env, db_url), engine)
    assert mirror(engine) == {} and state(engine).delta_link is None  # type: ignore[union-attr]


def test_an_empty_directory_read_is_refused(env: GraphEnv, engine: Engine, db_url: str) -> None:
    d = env.tenant.directory
    ids = d.add_users(30, seed=8)
    settings = make_settings(env, db_url)
    cycle(env, settings, engine)
    for uid in ids:
        d.hard_delete(uid)
    with pytest.raises(PermanentError, match="empty directory"):
        cycle(env, settings, engine, full=True, now=NOW + timedelta(hours=1))
    assert all(v[1] == "none" for v in mirror(engine).values())


def test_dry_run_changes_nothing(env: GraphEnv, engine: Engine, db_url: str) -> None:
    env.tenant.directory.add_users(40, seed=9)
    r = cycle(env, make_settings(env, db_url), engine, dry_run=True)
    assert r.dry_run and r.counts["created"] == 40
    assert mirror(engine) == {} and state(engine) is None
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(SyncCycle)).one()[0] == 0  # type: ignore[call-overload]


# --------------------------------------------------------------------------- seats through the cycle


def enroll(engine: Engine, users: list[str], *, catalog: str = "cat1", course: str = "c1") -> None:
    with Session(engine) as s:
        s.merge(Catalog(tenant="contoso", id=catalog, name=f"Catalog {catalog}"))
        s.merge(Course(tenant="contoso", id=course, catalog_id=catalog, title="Course", status="published"))
        for u in users:
            s.merge(Enrollment(tenant="contoso", course_id=course, user_id=u, role="learner", enrolled_at=NOW))
            s.merge(LearnerListEntry(tenant="contoso", catalog_id=catalog, user_id=u, added_at=NOW))
        s.commit()


def open_seats(engine: Engine) -> dict[str, str]:
    with Session(engine) as s:
        rows = s.exec(select(Seat).where(Seat.released_at.is_(None))).scalars().all()  # type: ignore[union-attr, call-overload]
        return {r.holder: r.acquire_reason for r in rows}


def last_release(engine: Engine, holder: str) -> str | None:
    with Session(engine) as s:
        r = s.exec(
            select(Seat.release_reason)
            .where(Seat.holder == holder, Seat.released_at.is_not(None))  # type: ignore[union-attr, call-overload]
            .order_by(Seat.released_at.desc())
        ).first()  # type: ignore[union-attr]
        return None if r is None else r[0]


def test_disable_soft_delete_hard_delete_free_seats_and_restore_takes_them_back(
    env: GraphEnv, engine: Engine, db_url: str
) -> None:
    d = env.tenant.directory
    ids = d.add_users(20, seed=10, disabled_fraction=0)
    enroll(engine, ids[:10])
    settings = make_settings(env, db_url)
    r = cycle(env, settings, engine)
    assert len(r.plan.takes) == 10 and set(open_seats(engine)) == set(ids[:10])
    d.disable(ids[0])
    d.soft_delete(ids[1])
    d.hard_delete(ids[2])
    d.disable(ids[15])  # not enrolled: holds no seat, frees nothing
    r = cycle(env, settings, engine, now=NOW + timedelta(minutes=15))
    assert {(c.holder, c.reason.value) for c in r.plan.frees} == {
        (ids[0], "account_disabled"),
        (ids[1], "account_soft_deleted"),
        (ids[2], "account_deleted"),
    }
    assert set(open_seats(engine)) == set(ids[3:10])
    d.enable(ids[0])
    d.restore(ids[1])
    r = cycle(env, settings, engine, now=NOW + timedelta(minutes=30))
    assert {(c.holder, c.reason.value) for c in r.plan.takes} == {(ids[0], "restored"), (ids[1], "restored")}
    assert set(open_seats(engine)) == set(ids[:2]) | set(ids[3:10])
    # Applying the same inputs again changes nothing.
    assert cycle(env, settings, engine, full=True, now=NOW + timedelta(minutes=45)).plan.is_empty


def test_mass_free_is_held_and_approve_applies_it(env: GraphEnv, engine: Engine, db_url: str) -> None:
    from licsync.service import approve_hold

    d = env.tenant.directory
    ids = d.add_users(20, seed=11, disabled_fraction=0)
    enroll(engine, ids)
    settings = make_settings(env, db_url, mass_free_threshold=3, mass_free_fraction=1.0)
    cycle(env, settings, engine)
    for uid in ids[:5]:
        d.disable(uid)
    r = cycle(env, settings, engine, now=NOW + timedelta(minutes=15))
    assert r.hold_id and "more than mass_free_threshold (3)" in (r.hold_reason or "")
    assert len(open_seats(engine)) == 20  # nothing freed
    d.enable(ids[0])  # one comes back before approval
    cycle(env, settings, engine, now=NOW + timedelta(minutes=20))
    with Session(engine) as s:
        assert approve_hold(s, settings, r.hold_id, NOW + timedelta(minutes=25)) == (4, 1)
        s.commit()
        hold = s.get(MassFreeHold, r.hold_id)
        assert hold is not None and hold.status == "approved"
    assert set(open_seats(engine)) == {ids[0], *ids[5:]}
    assert last_release(engine, ids[1]) == "account_disabled"


def test_counts_match_the_tables(env: GraphEnv, engine: Engine, db_url: str) -> None:
    env.tenant.directory.add_users(10, seed=12)
    cycle(env, make_settings(env, db_url), engine)
    with Session(engine) as s:
        n = s.exec(select(func.count()).select_from(DirectoryUser)).one()  # type: ignore[call-overload]
    assert n[0] == 10


def test_the_cycle_pulls_the_lms_catalogs_in_its_own_transaction(
    env: GraphEnv, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LMS365-style OData API is read whole each cycle and applied with the directory changes."""
    from licsync.catalogs.emulator import LmsEmulator

    ids = env.tenant.directory.add_users(6, seed=13)
    with LmsEmulator(page_size=2) as lms:
        monkeypatch.setenv("LICSYNC_TEST_LMS_KEY", lms.api_key)
        lms.add_catalog("cat1", "Sales")
        lms.add_course("c1", "cat1")
        lms.add_course("c2", "cat1")
        for uid in ids[:3]:
            lms.enroll("c1", uid)
        lms.enroll("c2", ids[3])
        settings = Settings.model_validate({
            "database": {"url": db_url},
            "tenant": [env.server.tenant_config("contoso", tenant=env.tenant, lms_url=lms.url,
                                               lms_api_key="env:LICSYNC_TEST_LMS_KEY")],
            "seats": {"mass_free_fraction": 1.0},
        })
        cycle(env, settings, engine)
        assert set(open_seats(engine)) == set(ids[:4])
        lms.delete_course("c2")
        env.tenant.directory.disable(ids[0])
        r = cycle(env, settings, engine, now=NOW + timedelta(minutes=15))
        assert {(c.holder, c.reason.value) for c in r.plan.frees} == {
            (ids[0], "account_disabled"), (ids[3], "course_deleted")}
        lms.fail_next(10, status=503)
        before = open_seats(engine)
        lms.unenroll("c1", ids[1])
        with pytest.raises(TransientError):
            cycle(env, settings, engine, now=NOW + timedelta(minutes=30))
        assert open_seats(engine) == before  # an LMS outage changes nothing


def test_a_full_round_gives_back_the_wider_sqlite_cache(env: GraphEnv, sqlite_engine: Engine, tmp_path: Any) -> None:
    """A full round widens SQLite's page cache for its writes; the pooled connection must not keep it."""
    env.tenant.directory.add_users(50, seed=3)
    url = str(sqlite_engine.url)
    settings = make_settings(env, url)
    with sqlite_engine.connect() as c:
        before = c.exec_driver_sql("PRAGMA cache_size").scalar()
    for kw in ({"full": True, "dry_run": True}, {"full": True}):
        cycle(env, settings, sqlite_engine, **kw)
        with sqlite_engine.connect() as c:  # the pool hands back the one connection the round used
            assert c.exec_driver_sql("PRAGMA cache_size").scalar() == before
