"""The pieces of ``bench_scale.py``, each in a fresh process: ``python _scale_worker.py PIECE`` with
a JSON context on stdin, one ``@@RESULT {json}`` line out (as ``_worker.py``, whose pieces it reuses).

Pieces: setup, import, full_sync, incremental (from ``_worker``); full_sync_fail (a full round
whose Graph goes away once ``fail_at`` of the users are read); walk_sample (the sequential delta
walk, its first ``pages`` pages); floor_users (httpx + orjson.loads over the ``/users`` shard pages
a parallel read fetches).
"""

from __future__ import annotations

import asyncio
import resource
import string
import sys
import time
from pathlib import Path
from typing import Any

import _worker
import orjson
from _worker import RESULT, TENANT, Ctx, SqlCounter, measure


def _control(ctx: Ctx, op: str, **kwargs: Any) -> None:
    import httpx

    from licsync.graph.tls import client_ssl_context

    verify = client_ssl_context(Path(ctx.raw["tenant"]["ca_bundle"]))
    with httpx.Client(verify=verify, trust_env=False, timeout=30) as http:
        http.post(f"{ctx.raw['control_url']}/{op}", json=kwargs).raise_for_status()


def full_sync_fail(ctx: Ctx) -> dict[str, Any]:
    """A full round that fails once ``fail_at`` (0.9) of the users have been read: Graph answers 503 from then on."""
    from licsync.errors import LicsyncError
    from licsync.sync import run_cycle

    _worker._preimport_graph()
    settings, engine = ctx.settings(), ctx.engine()
    tenant = settings.get_tenant(TENANT)
    at = int(ctx.raw["fail_at"] * ctx.raw["users"])
    fired: dict[str, int] = {}

    def progress(_pages: int, users: int) -> None:
        if users >= at and not fired:
            fired["users"] = users
            _control(ctx, "fail_next", n=10**9, status=503)

    def run() -> dict[str, Any]:
        try:
            asyncio.run(run_cycle(settings, tenant, engine, now=ctx.now, full=True, progress=progress))
        except LicsyncError as exc:
            return {"failed": True, "error": str(exc)[:200], "users_read": fired.get("users", 0)}
        return {"failed": False, "users_read": fired.get("users", 0)}

    try:
        return measure(run, SqlCounter(engine), ctx.profile)
    finally:
        _control(ctx, "clear_faults")


def walk_sample(ctx: Ctx) -> dict[str, Any]:
    """The sequential walk licsync does without ``full_read = "parallel"``: its first ``pages`` pages."""
    from licsync.graph.client import GraphClient

    _worker._preimport_graph()
    tenant = ctx.settings().get_tenant(TENANT)
    limit = int(ctx.raw["pages"])

    async def walk() -> dict[str, Any]:
        async with GraphClient(tenant) as graph:
            await asyncio.to_thread(graph._tokens.get_token)
            t0, pages, users = time.perf_counter(), 0, 0
            async for page in graph.delta_pages(None):
                pages += 1
                users += len(page.rows)
                if pages >= limit:
                    break
            return {"pages": pages, "users": users, "seconds_per_page": (time.perf_counter() - t0) / pages}

    return measure(lambda: asyncio.run(walk()))


def floor_users(ctx: Ctx) -> dict[str, Any]:
    """Every ``/users`` shard page over loopback with plain httpx (one token, fetched before), ``orjson.loads`` each."""
    from licsync.graph.parse import USER_SELECT

    t = ctx.raw["tenant"]
    http = _worker.graph_http(t)

    def run() -> dict[str, Any]:
        users = pages = 0
        for prefix in string.ascii_lowercase + string.digits:
            url: str | None = f"{t['graph_url']}/users"
            params: dict[str, str] | None = {
                "$select": USER_SELECT,
                "$top": "999",
                "$filter": f"startsWith(userPrincipalName,'{prefix}')",
            }
            while url:
                resp = http.get(url, params=params)
                resp.raise_for_status()
                doc = orjson.loads(resp.content)
                users += len(doc["value"])
                pages += 1
                url, params = doc.get("@odata.nextLink"), None
        return {"users": users, "requests": pages}

    try:
        return measure(run)
    finally:
        http.close()


PIECES = {
    "setup": _worker.setup,
    "import": _worker.import_,
    "full_sync": _worker.full_sync,
    "incremental": _worker.incremental,
    "full_sync_fail": full_sync_fail,
    "walk_sample": walk_sample,
    "floor_users": floor_users,
}


def main() -> int:
    piece = sys.argv[1]
    ctx = Ctx(orjson.loads(sys.stdin.buffer.read()))
    _worker._quiet_logs()
    result = PIECES[piece](ctx)
    result.setdefault("rss_peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    sys.stdout.write(RESULT + orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
