"""One measured piece of a benchmark, in a fresh process: ``python _worker.py PIECE`` with a JSON context on stdin.

Prints one line ``@@RESULT {json}``: wall and CPU seconds of the measured part only (imports and
setup excluded), the process's peak RSS (``ru_maxrss``, imports included: that is what a
deployment pays), Graph requests and SQL statements (a ``before_cursor_execute`` listener on the
engine: one per cursor execution, an ``executemany`` counting once; ``sql_params`` adds up the
parameter sets).

Pieces: setup, import, floor, baseline, full_sync, incremental, full_reconcile, status, access.
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

TENANT = "bench"
RESULT = "@@RESULT "


def _vmrss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


BULK_TABLES = frozenset(
    {"directory_user", "directory_change", "catalog", "course", "enrollment", "learner_list", "seat", "seat_catalog"}
)
ANALYZED_IN_TX: list[str] = []


def analyze_after_bulk_inserts(engine: Any) -> None:
    """Simulate the suggested fix on PostgreSQL (``--analyze-in-tx``): once a table has grown by 1,000
    rows in this process, and again at every doubling, run ``ANALYZE`` on it inside the writing
    transaction (allowed there, and it sees the transaction's own rows), so the planner stops
    estimating one row for tables that were just bulk-loaded. Not counted in ``sql``.
    """
    from sqlalchemy import event

    grown: dict[str, int] = {}
    next_at: dict[str, int] = {}

    def after(_conn: Any, cursor: Any, statement: str, params: Any, _ctx: Any, executemany: bool) -> None:
        if statement.lstrip()[:11].upper() != "INSERT INTO":
            return
        table = statement.split(None, 3)[2].strip('"').split(".")[-1]
        if table not in BULK_TABLES:
            return
        n = cursor.rowcount if cursor.rowcount and cursor.rowcount > 0 else (len(params) if executemany else 1)
        grown[table] = grown.get(table, 0) + n
        if grown[table] >= next_at.get(table, 1000):
            cursor.connection.execute(f"ANALYZE {table}")
            next_at[table] = 2 * grown[table]
            ANALYZED_IN_TX.append(table)

    event.listen(engine, "after_cursor_execute", after)


class SqlCounter:
    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.statements = 0
        self.params = 0
        self.on = False
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cursor: Any, _stmt: str, params: Any, _ctx: Any, executemany: bool) -> None:
        if self.on:
            self.statements += 1
            self.params += len(params) if executemany and params is not None else 1


def measure(
    fn: Callable[[], dict[str, Any]], sql: SqlCounter | None = None, profile: str | None = None
) -> dict[str, Any]:
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    rss0 = _vmrss_mb()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if sql is not None:
        sql.on = True
    out = fn()
    if sql is not None:
        sql.on = False
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=True, color=False, show_all=False))  # type: ignore[arg-type]
        Path(profile).with_suffix(".html").write_text(profiler.output_html())  # type: ignore[arg-type]
    res = {
        "wall": wall,
        "cpu": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
        "rss_start_mb": rss0,
        "rss_peak_mb": r1.ru_maxrss / 1024,
        **out,
    }
    if sql is not None:
        res["sql"] = sql.statements
        res["sql_params"] = sql.params
    if ANALYZED_IN_TX:
        res["analyzed_in_tx"] = list(ANALYZED_IN_TX)
    return res


# --------------------------------------------------------------------------- context


class Ctx:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.db_url: str = raw.get("db_url", "")
        self.now = datetime.fromisoformat(raw["now"]) if "now" in raw else datetime(2026, 11, 22, 10, tzinfo=UTC)
        self.profile: str | None = raw.get("profile")

    def settings(self) -> Any:
        from licsync.config import Settings

        return Settings.model_validate(
            {
                "database": {"url": self.db_url},
                "tenant": [self.raw["tenant"]],
                # The benchmark frees hundreds of seats per churn round: apply them, do not hold them.
                "seats": {"mass_free_threshold": 10**9, "mass_free_fraction": 1.0},
            }
        )

    def engine(self) -> Any:
        from licsync import db

        engine = db.get_engine(self.db_url)
        if (
            self.raw.get("analyze_in_tx")
            and self.db_url.startswith("postgresql")
            and not getattr(engine, "_bench_aa", 0)
        ):
            analyze_after_bulk_inserts(engine)
            engine._bench_aa = 1  # type: ignore[attr-defined]
        return engine


def _quiet_logs() -> None:
    from licsync import log

    log.configure("warning", json=True, stream=sys.stderr)


def _preimport_graph() -> None:
    """What a running daemon has imported already: msgraph takes ~1 s to import, not part of a cycle."""
    import msgraph  # noqa: F401
    from msgraph.generated.directory.deleted_items.graph_user.graph_user_request_builder import (  # noqa: F401
        GraphUserRequestBuilder,
    )
    from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder  # noqa: F401

    import licsync.graph.client
    import licsync.graph.sdk  # noqa: F401


# --------------------------------------------------------------------------- pieces


def setup(ctx: Ctx) -> dict[str, Any]:
    """Schema, and an active subscription with room for every user (grace never starts)."""
    from licsync import db
    from licsync.subscriptions import keys, registry, terms

    engine = ctx.engine()
    db.upgrade(engine)
    private_pem, public_b64 = keys.generate_keypair()
    key = keys.issue(
        private_pem,
        terms.Terms(
            id="SUB-BENCH",
            customer="Bench Ltd",
            seats=max(10, int(ctx.raw["seats"])),
            starts_at=ctx.now - timedelta(days=200),
            ends_at=ctx.now + timedelta(days=165),
            issued_at=ctx.now - timedelta(days=1),
        ),
    )
    with db.session_scope(engine) as s:
        registry.activate(s, TENANT, key, public_b64, ctx.now - timedelta(hours=1), actor="bench")
    return {}


def import_(ctx: Ctx) -> dict[str, Any]:
    from licsync import db
    from licsync.service import import_enrollments

    settings, engine = ctx.settings(), ctx.engine()
    sql = SqlCounter(engine)

    def run() -> dict[str, Any]:
        with db.session_scope(engine) as s:
            r = import_enrollments(s, settings, TENANT, Path(ctx.raw["csv"]), replace=False, now=ctx.now, actor="bench")
        return {"rows": r.rows, "summary": r.summary()}

    return measure(run, sql, ctx.profile)


def _cycle(ctx: Ctx, *, full: bool) -> dict[str, Any]:
    from licsync.sync import run_cycle

    _preimport_graph()
    settings, engine = ctx.settings(), ctx.engine()
    tenant = settings.get_tenant(TENANT)
    sql = SqlCounter(engine)

    def run() -> dict[str, Any]:
        r = asyncio.run(run_cycle(settings, tenant, engine, now=ctx.now, full=full))
        return {"requests": r.requests, "summary": r.summary(), "users": r.summary()["users_seen"]}

    return measure(run, sql, ctx.profile)


def full_sync(ctx: Ctx) -> dict[str, Any]:
    return _cycle(ctx, full=True)


def incremental(ctx: Ctx) -> dict[str, Any]:
    return _cycle(ctx, full=False)


def full_reconcile(ctx: Ctx) -> dict[str, Any]:
    """Plan every candidate of the tenant (``plan_for(..., None)``) and apply, as a cycle would."""
    from licsync import db, reseat

    settings, engine = ctx.settings(), ctx.engine()
    sql = SqlCounter(engine)

    def run() -> dict[str, Any]:
        with db.session_scope(engine) as s:
            plan = reseat.reseat(s, settings, TENANT, None, ctx.now).plan
        return {"considered": plan.considered, "takes": len(plan.takes), "frees": len(plan.frees)}

    return measure(run, sql, ctx.profile)


def _latencies(fn: Callable[[Any], Any], args: list[Any]) -> dict[str, float]:
    times = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    return {
        "n": n,
        "first_ms": 0.0,
        "p50_ms": times[n // 2] * 1e3,
        "p99_ms": times[min(n - 1, int(n * 0.99))] * 1e3,
        "max_ms": times[-1] * 1e3,
        "mean_ms": sum(times) / n * 1e3,
    }


def status(ctx: Ctx) -> dict[str, Any]:
    from sqlmodel import Session

    from licsync.status import tenant_status

    engine = ctx.engine()
    sql = SqlCounter(engine)
    reps = int(ctx.raw.get("reps", 50))

    def run() -> dict[str, Any]:
        with Session(engine) as s:
            t0 = time.perf_counter()
            first = tenant_status(s, TENANT, ctx.now)
            cold = time.perf_counter() - t0
            lat = _latencies(lambda _i: tenant_status(s, TENANT, ctx.now), list(range(reps)))
        lat["first_ms"] = cold * 1e3
        return {"latency": lat, "consumed": first["consumed"], "catalogs": len(first["catalogs"])}

    res = measure(run, sql, ctx.profile)
    res["sql_per_call"] = res["sql"] / (reps + 1)
    return res


def access(ctx: Ctx) -> dict[str, Any]:
    """The platform's launch-time question (``GET .../access/{user}``'s query) and ``explain``."""
    from sqlalchemy import text
    from sqlmodel import Session

    from licsync.service import access_decision, explain_user

    engine = ctx.engine()
    n = int(ctx.raw.get("reps", 500))
    with engine.connect() as c:
        holders = [r[0] for r in c.execute(text("SELECT holder FROM seat WHERE released_at IS NULL LIMIT 20000"))]
        users = [r[0] for r in c.execute(text("SELECT id FROM directory_user LIMIT 20000"))]
    rng = random.Random(5)
    sample = [rng.choice(holders) if holders and i % 2 == 0 else rng.choice(users) for i in range(n)]
    sql = SqlCounter(engine)

    def run() -> dict[str, Any]:
        with Session(engine) as s:
            access_decision(s, TENANT, sample[0], ctx.now)  # warm the statement cache
            acc = _latencies(lambda u: access_decision(s, TENANT, u, ctx.now), sample)
            s.rollback()
            sql.statements, sql.params = 0, 0
            exp = _latencies(lambda u: explain_user(s, TENANT, u, ctx.now), sample[: max(1, n // 5)])
        return {"access": acc, "explain": exp}

    return measure(run, sql, ctx.profile)


def graph_http(t: dict[str, Any]) -> Any:
    """A plain httpx client to the tenant's Graph with one client-credentials token, fetched now:
    the floors' transport (no SDK, no MSAL)."""
    import httpx

    from licsync.config import SecretRef
    from licsync.graph.auth import graph_scope
    from licsync.graph.tls import client_ssl_context

    http = httpx.Client(verify=client_ssl_context(Path(t["ca_bundle"])), trust_env=False, timeout=120)
    token = http.post(
        f"{t['authority']}/{t['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": t["client_id"],
            "client_secret": SecretRef(t["client_secret"]).resolve(),
            "scope": graph_scope(t["graph_url"]),
        },
    ).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def floor(ctx: Ctx) -> dict[str, Any]:
    """Every delta page over loopback with plain httpx (one token, fetched before), ``orjson.loads`` each."""

    from licsync.graph.parse import USER_SELECT

    t = ctx.raw["tenant"]
    http = graph_http(t)

    def run() -> dict[str, Any]:
        url: str | None = f"{t['graph_url']}/users/delta?$select={USER_SELECT}"
        users = pages = 0
        while url:
            resp = http.get(url)
            resp.raise_for_status()
            doc = orjson.loads(resp.content)
            users += len(doc["value"])
            pages += 1
            url = doc.get("@odata.nextLink")
        return {"users": users, "requests": pages}

    try:
        return measure(run, None, ctx.profile)
    finally:
        http.close()


def baseline(ctx: Ctx) -> dict[str, Any]:
    """The straightforward approach, on the first ``subset`` users of the initial round.

    1. msgraph-sdk typed models: ``client.users.delta.get()``, then ``with_url(odata_next_link)``
       (the same transport, MSAL token provider and middleware as licsync — only the typed
       parsing differs);
    2. a Python loop over those users with the ORM: mirror the user (``session.merge``), read
       their enrollments, courses and learner lists, read their open seat, take or free it.
       Flushed, then rolled back, so the licsync run that follows starts from the same state.
    """
    import httpx
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
    from sqlmodel import Session, select

    from licsync.config import TenantConfig
    from licsync.db.models import Course, DirectoryUser, Enrollment, LearnerListEntry, Seat
    from licsync.graph.auth import GraphTokenProvider, TokenSource
    from licsync.graph.parse import USER_SELECT
    from licsync.graph.sdk import build_service_client
    from licsync.graph.tls import client_ssl_context

    subset = int(ctx.raw.get("subset", 5000))
    tenant = TenantConfig(**ctx.raw["tenant"])
    tokens = TokenSource(tenant)
    tokens.get_token()
    engine = ctx.engine()
    out: dict[str, Any] = {}

    async def fetch() -> list[Any]:
        http = httpx.AsyncClient(verify=client_ssl_context(tenant.ca_bundle), trust_env=False, timeout=120)
        client = build_service_client(tenant.graph_url, GraphTokenProvider(tokens, tenant.graph_url), http)
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=USER_SELECT.split(","))
        resp = await client.users.delta.get(request_configuration=RequestConfiguration(query_parameters=query))
        users: list[Any] = []
        requests = 1
        while True:
            users.extend(resp.value or [])
            if len(users) >= subset or not resp.odata_next_link:
                break
            resp = await client.users.delta.with_url(resp.odata_next_link).get()
            requests += 1
        await http.aclose()
        out["requests"] = requests
        return users

    users: list[Any] = []

    def run_fetch() -> dict[str, Any]:
        users.extend(asyncio.run(fetch()))
        return {"users": len(users), "requests": out["requests"]}

    fetched = measure(run_fetch)
    sql = SqlCounter(engine)
    now = ctx.now

    def run_reconcile() -> dict[str, Any]:
        takes = frees = 0
        with Session(engine) as s:
            for u in users:
                s.merge(
                    DirectoryUser(
                        tenant=TENANT,
                        id=u.id,
                        upn=u.user_principal_name,
                        mail=u.mail,
                        display_name=u.display_name,
                        given_name=u.given_name,
                        surname=u.surname,
                        employee_id=u.employee_id,
                        user_type=u.user_type,
                        account_enabled=u.account_enabled,
                        deleted="none",
                        last_changed=now,
                    )
                )
                rows = s.exec(
                    select(Enrollment, Course).where(
                        Enrollment.tenant == TENANT,
                        Enrollment.user_id == u.id,
                        Enrollment.role == "learner",
                        Course.tenant == TENANT,
                        Course.id == Enrollment.course_id,
                    )
                ).all()
                lists = set(
                    s.exec(
                        select(LearnerListEntry.catalog_id).where(
                            LearnerListEntry.tenant == TENANT, LearnerListEntry.user_id == u.id
                        )
                    ).all()
                )
                qualifies = bool(u.account_enabled) and any(
                    c.status != "deleted" and c.catalog_id in lists for _e, c in rows
                )
                seat = s.exec(
                    select(Seat).where(Seat.tenant == TENANT, Seat.holder == u.id, Seat.released_at.is_(None))  # type: ignore[union-attr]
                ).first()
                if qualifies and seat is None:
                    s.add(Seat(tenant=TENANT, holder=u.id, acquired_at=now, acquire_reason="enrolled"))
                    takes += 1
                elif not qualifies and seat is not None:
                    seat.released_at, seat.release_reason = now, "account_disabled"
                    frees += 1
            s.flush()
            s.rollback()
        return {"users": len(users), "takes": takes, "frees": frees}

    reconciled = measure(run_reconcile, sql)
    return {
        "fetch": fetched,
        "reconcile": reconciled,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


PIECES: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "setup": setup,
    "import": import_,
    "floor": floor,
    "baseline": baseline,
    "full_sync": full_sync,
    "incremental": incremental,
    "full_reconcile": full_reconcile,
    "status": status,
    "access": access,
}


def main() -> int:
    piece = sys.argv[1]
    ctx = Ctx(orjson.loads(sys.stdin.buffer.read()))
    _quiet_logs()
    result = PIECES[piece](ctx)
    result.setdefault("rss_peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    sys.stdout.write(RESULT + orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
