"""CLI: the daemon (``run``), the API server (``serve``), ``health``, ``healthcheck`` and API tokens.

``token create`` prints only the token on stdout (scripts capture it); everything else goes to
stderr. ``health`` is a probe: exit 0 and one line when the daemon's heartbeat is fresh and the
database answers, exit 1 and one line saying why otherwise. ``healthcheck`` is the container's
probe, right for ``run`` and ``serve`` alike: ``/healthz`` on the local API, or the heartbeat when
no API listens (``run --no-api``).

``run`` and ``serve`` log at ``info`` unless ``--log-level`` says otherwise: start, the listen
address, each cycle's summary and each error reach ``docker logs`` and the journal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

import typer
from sqlalchemy.engine import Engine

from licsync import log
from licsync.cli.app import Context, app, ctx_of, emit_json
from licsync.cli.escape import echo

token_app = typer.Typer(help="API tokens for the HTTP API and dashboard.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _clock(c: Context) -> Callable[[], datetime] | None:
    """``--now`` for a long-running process: that instant at start, then running with real time."""
    if c.now_override is None:
        return None
    start, base = time.monotonic(), c.now_override

    def clock() -> datetime:
        return base + timedelta(seconds=time.monotonic() - start)

    return clock


MigrateOpt = Annotated[
    bool, typer.Option("--migrate", help="Create or migrate the schema first (`db upgrade`; replicas take turns).")
]


def _service_engine(c: Context, migrate: bool) -> Engine:
    """The engine of a long-running command: logs at info by default; migrates first when asked."""
    from licsync import db

    if c.log_level is None:
        log.configure("info")
    if not migrate:
        return c.engine()
    engine = c.engine(check_schema=False)
    before, after = db.upgrade(engine)
    log.get_logger(component="db").info("schema_ready", before=before, after=after, migrated=before != after)
    db.require_schema(engine)
    return engine


@app.command()
def serve(
    ctx: typer.Context,
    loop: Annotated[
        str, typer.Option("--loop", help="Event loop: auto (uvloop when installed), asyncio or uvloop.")
    ] = "auto",
    http: Annotated[
        str, typer.Option("--http", help="HTTP parser: auto (httptools when installed), h11 or httptools.")
    ] = "auto",
    migrate: MigrateOpt = False,
) -> None:
    """The HTTP API and dashboard only (on api.listen), until SIGTERM or Ctrl+C."""
    from licsync.daemon import run_api

    c = ctx_of(ctx)
    settings = c.settings
    engine = _service_engine(c, migrate)
    raise SystemExit(run_api(settings, engine, clock=_clock(c), loop=loop, http=http))


@app.command()
def run(
    ctx: typer.Context,
    shutdown_timeout: Annotated[
        float, typer.Option("--shutdown-timeout", help="Seconds a running cycle may take to finish on SIGTERM.")
    ] = 25.0,
    no_api: Annotated[bool, typer.Option("--no-api", help="Run the scheduler without the HTTP API.")] = False,
    migrate: MigrateOpt = False,
) -> None:
    """The daemon: scheduled sync cycles, grace evaluation, outbox drain, and the HTTP API."""
    from licsync.daemon import run_daemon

    c = ctx_of(ctx)
    settings = c.settings
    if not settings.tenant:
        from licsync.errors import ConfigError

        raise ConfigError("no [[tenant]] configured: nothing to schedule")
    engine = _service_engine(c, migrate)
    raise SystemExit(run_daemon(settings, engine, clock=_clock(c), shutdown_timeout=shutdown_timeout,
                                serve=not no_api))


@app.command()
def health(
    ctx: typer.Context,
    any_host: Annotated[
        bool, typer.Option("--any-host", help="Accept a daemon on any host, not only this one.")
    ] = False,
) -> None:
    """Exit 0 when this host's daemon beat recently and the database answers; else 1, saying why."""
    from licsync.errors import ConfigError, LicsyncError
    from licsync.health import heartbeat_status

    c = ctx_of(ctx)
    try:
        engine = c.engine()
    except ConfigError:
        raise  # a broken configuration is not "unhealthy": fix it (exit 78)
    except LicsyncError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(1) from None
    ok, why = heartbeat_status(engine, prefix="" if any_host else None)
    (sys.stdout if ok else sys.stderr).write(f"{why}\n")
    raise SystemExit(0 if ok else 1)


@app.command()
def healthcheck(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for /healthz.")] = 5.0,
) -> None:
    """The container probe for `run` and `serve`: GET /healthz on the local API (exit 0 on 200);
    when no API listens (`run --no-api`), the heartbeat as `health` reads it."""
    from licsync.health import heartbeat_status, probe_healthz

    c = ctx_of(ctx)
    answered, ok, why = probe_healthz(c.settings, timeout=timeout)
    if not answered:  # nothing listens: a scheduler-only daemon, judged by its heartbeat
        ok, why = heartbeat_status(c.engine())
    (sys.stdout if ok else sys.stderr).write(f"{why}\n")
    raise SystemExit(0 if ok else 1)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's name from the configuration.")],
    role: Annotated[str, typer.Option("--role", help="tenant-admin, catalog-admin or platform.")],
    catalog: Annotated[
        list[str] | None, typer.Option("--catalog", help="A catalog id (catalog-admin; repeat for several).")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Who or what the token is for.")] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="Refuse the token after this long, e.g. 90d, 12h (default: until revoked).")] = None,
) -> None:
    """Create an API token and print it (only it) on stdout: it is shown this once."""
    from datetime import UTC, datetime

    from licsync import tokens
    from licsync.config import parse_duration
    from licsync.db import session_scope
    from licsync.errors import InputError

    c = ctx_of(ctx)
    c.settings.get_tenant(tenant)  # an unknown tenant is a typo, not a new tenant
    expires_at = None
    if expires is not None:
        try:
            lifetime = parse_duration(expires)
            expires_at = datetime.now(UTC) + lifetime  # credentials live in real time, whatever --now says
        except (ValueError, OverflowError) as exc:
            raise InputError(f"--expires: {exc}") from None
        if lifetime.total_seconds() <= 0:
            raise InputError("--expires must be a positive duration, e.g. 90d")
    with session_scope(c.engine()) as s:
        raw = tokens.create_token(s, tenant, role, list(catalog or []), c.now(), label=label, expires_at=expires_at)
    sys.stdout.write(raw + "\n")


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's tokens.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List tokens (ids, roles, catalogs, labels, expiry; never the secrets)."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from licsync import tokens

    with Session(ctx_of(ctx).engine()) as s:
        rows = tokens.list_tokens(s, tenant, include_revoked=revoked)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo("no tokens")
        return
    for r in rows:
        cats = f" catalogs={','.join(r['catalogs'])}" if r["catalogs"] else ""
        state = f" REVOKED {r['revoked_at']}" if r["revoked_at"] else ""
        if not state and r["expires_at"]:
            expired = datetime.fromisoformat(r["expires_at"].replace("Z", "+00:00")) <= datetime.now(UTC)
            state = f" {'EXPIRED' if expired else 'expires'} {r['expires_at']}"
        echo(f"{r['id']}  {r['tenant']}  {r['role']}{cats}  created {r['created_at']}"
                   f"  last used {r['last_used_at'] or 'never'}  {r['label'] or ''}{state}".rstrip())


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="The token's id (see token list).")]
) -> None:
    """Revoke a token; a running API refuses it within 2 s (it trusts a verified token that long)."""
    from licsync import tokens
    from licsync.db import session_scope
    from licsync.errors import NotFound

    c = ctx_of(ctx)
    tid = tokens.token_id_of(token_id) or token_id  # accept the whole token too
    with session_scope(c.engine()) as s:
        if not tokens.revoke(s, tid, c.now()):
            raise NotFound(f"no active token with id {tid!r}")
    echo(f"token {tid} revoked")
