"""The fault suite's world: a tenant where everyone is enrolled, cycles, state snapshots, metrics.

``World`` drives one emulated tenant into two databases: the one under test (faults injected) and
a *reference* that runs the same cycles with no faults. "Correct" always means: the same directory
mirror and the same open seats (holder → reason) as the reference computed from the same inputs.
"""

from __future__ import annotations

import asyncio
import os
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync.config import Settings, TenantConfig
from licsync.db import session_scope
from licsync.db.models import (
    Catalog,
    Course,
    DirectoryChange,
    DirectoryUser,
    Enrollment,
    LearnerListEntry,
    MassFreeHold,
    OutboxMessage,
    Seat,
    SyncState,
)
from licsync.errors import LicsyncError
from licsync.graph.client import GraphClient
from licsync.graph.emulator import EmulatedTenant, EmulatorServer
from licsync.sync import CycleResult, run_cycle
from tests.metrics_text import parse_metrics

SOAK = os.environ.get("LICSYNC_SOAK") == "1"
SEED = int(os.environ.get("LICSYNC_FAULT_SEED", "20261122"))
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ADMINS = ["it-admin@contoso.example", "second-admin@contoso.example"]


def settings_for(server: EmulatorServer, tenant: EmulatedTenant, url: str, *, smtp_port: int | None = None,
                 **tenant_over: Any) -> Settings:
    notifications: dict[str, Any] = {"transport": "none"}
    if smtp_port is not None:
        notifications = {"transport": "smtp", "sender": "licsync@contoso.example", "smtp_host": "127.0.0.1",
                         "smtp_port": smtp_port}
    cfg = server.tenant_config("contoso", tenant=tenant, admins=ADMINS, **({"max_retries": 3} | tenant_over))
    return Settings.model_validate({
        "database": {"url": url}, "tenant": [cfg], "notifications": notifications,
        "seats": {"mass_free_threshold": 100_000, "mass_free_fraction": 1.0},
    })


def enroll(engine: Engine, user_ids: list[str], tenant: str = "contoso") -> None:
    """Everyone learns in one course of one catalog: every enabled, existing user holds a seat."""
    with session_scope(engine) as s:
        if s.get(Catalog, (tenant, "cat")) is None:
            s.add(Catalog(tenant=tenant, id="cat", name="All"))
            s.add(Course(tenant=tenant, id="c1", catalog_id="cat", title="Course"))
        for uid in user_ids:
            s.add(Enrollment(tenant=tenant, course_id="c1", user_id=uid, role="learner", enrolled_at=NOW))
            s.add(LearnerListEntry(tenant=tenant, catalog_id="cat", user_id=uid, added_at=NOW))


def _count(s: Session, model: Any, tenant: str) -> int:
    return int(s.execute(select(func.count()).select_from(model).where(model.tenant == tenant)).scalar_one())


@dataclass(frozen=True)
class State:
    """What a cycle may change. ``facts`` is what two databases fed the same inputs must agree on."""

    mirror: dict[str, tuple[Any, ...]]
    seats: dict[str, str]
    seat_rows: int
    changes: int
    holds: int
    delta_link: str | None
    outbox: tuple[str, ...]

    @property
    def facts(self) -> tuple[dict[str, tuple[Any, ...]], dict[str, str]]:
        return self.mirror, self.seats


def state(engine: Engine, tenant: str = "contoso") -> State:
    with Session(engine) as s:
        users = s.execute(select(DirectoryUser.id, DirectoryUser.account_enabled, DirectoryUser.deleted,  # type: ignore[call-overload]
                                 DirectoryUser.display_name).where(DirectoryUser.tenant == tenant)).all()
        seats = s.execute(select(Seat.holder, Seat.acquire_reason).where(  # type: ignore[call-overload]
            Seat.tenant == tenant, Seat.released_at.is_(None))).all()  # type: ignore[union-attr]
        st = s.get(SyncState, tenant)
        keys = s.execute(select(OutboxMessage.idempotency_key).where(  # type: ignore[call-overload]
            OutboxMessage.tenant == tenant)).scalars().all()
        return State(
            mirror={u[0]: tuple(u[1:]) for u in users},
            seats=dict(seats),  # type: ignore[arg-type]
            seat_rows=_count(s, Seat, tenant),
            changes=_count(s, DirectoryChange, tenant),
            holds=_count(s, MassFreeHold, tenant),
            delta_link=st.delta_link if st else None,
            outbox=tuple(sorted(keys)),
        )


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


@dataclass
class World:
    """One emulated tenant synced into ``engine`` (faults) and ``ref`` (never faulted)."""

    server: EmulatorServer
    tenant: EmulatedTenant
    engine: Engine
    ref: Engine
    settings: Settings
    ref_settings: Settings
    sleeps: list[float] = field(default_factory=list)
    now: datetime = NOW

    def client(self, tenant: TenantConfig, *, real_sleep: bool = True) -> GraphClient:
        """A GraphClient whose waits are recorded; ``real_sleep=False`` records a long Retry-After
        without waiting it out (the clock is licsync's own boundary)."""

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            await (asyncio.sleep(min(seconds, 5.0)) if real_sleep else _no_sleep(seconds))

        c = GraphClient(tenant, sleep=sleep)
        c.backoff_base = 0.001
        return c

    def cycle(self, *, ref: bool = False, real_sleep: bool = True, progress: Callable[[int, int], None] | None = None,
              tenant_over: dict[str, Any] | None = None, **kw: Any) -> CycleResult | LicsyncError:
        """One cycle at ``self.now``: its result, or the LicsyncError it failed with."""
        settings, engine = (self.ref_settings, self.ref) if ref else (self.settings, self.engine)
        tenant = settings.tenant[0]
        if tenant_over:
            tenant = TenantConfig.model_validate(tenant.model_dump() | tenant_over)

        async def go() -> CycleResult:
            client = self.client(tenant, real_sleep=real_sleep)
            try:
                return await run_cycle(settings, tenant, engine, now=self.now, client=client,
                                       progress=progress, **kw)
            finally:
                await client.aclose()

        try:
            return asyncio.run(go())
        except LicsyncError as exc:
            return exc

    def both(self, **kw: Any) -> None:
        """A clean cycle in both databases (no fault armed)."""
        for ref in (False, True):
            out = self.cycle(ref=ref, **kw)
            assert isinstance(out, CycleResult), out

    def tick(self, minutes: int = 15) -> None:
        self.now += timedelta(minutes=minutes)

    def churn(self, rng: random.Random, n: int) -> dict[str, int]:
        """``n`` random directory changes (disable, enable, soft/hard delete, restore, rename, add)."""
        d = self.tenant.directory
        done: dict[str, int] = {}
        for _ in range(n):
            active = [u["id"] for u in d.active_users()]
            soft = [u["id"] for u, _when in d.soft_deleted()]
            kind = rng.choice(["disable", "enable", "soft_delete", "hard_delete", "restore", "rename", "add"])
            if kind == "add" or not active:
                d.add_user(displayName=f"New {rng.random():.6f}")
            elif kind == "restore" and soft:
                d.restore(rng.choice(soft))
            elif kind == "rename":
                d.update_user(rng.choice(active), displayName=f"Renamed {rng.random():.6f}")
            elif kind in ("disable", "enable", "soft_delete", "hard_delete"):
                getattr(d, kind)(rng.choice(active))
            else:
                continue
            done[kind] = done.get(kind, 0) + 1
        return done


def metrics(settings: Settings, engine: Engine) -> dict[str, float]:
    """``/metrics`` of the real API app, parsed: ``'name{labels}' → value`` (labels in any order,
    the ``replica`` label every sample carries left out)."""
    from licsync.api import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette.testclient's httpx2 notice
        from starlette.testclient import TestClient

    named = settings.model_copy(update={"api": settings.api.model_copy(update={"metrics_tenant_labels": "name"})})
    with TestClient(create_app(named, engine)) as client:  # tenant labels by name (default: t1, t2…)
        r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return parse_metrics(r.text)


def cycles_metric(settings: Settings, engine: Engine, status: str, kind: str = "delta") -> float:
    key = f'licsync_sync_cycles_total{{tenant="contoso",kind="{kind}",status="{status}"}}'
    return metrics(settings, engine).get(key, 0.0)
