"""CLI: schema, sync cycles, seat status, explanations and held mass frees."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Annotated

import typer

from licsync import db, status
from licsync.cli.app import app, ctx_of, emit_json
from licsync.cli.escape import echo
from licsync.cli.writes import NoSendOpt, actor, send_queued, writing_engine
from licsync.errors import NotFound, TransientError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's name from the configuration.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the schema (idempotent)."""
    engine = ctx_of(ctx).engine(check_schema=False)
    before, after = db.upgrade(engine)
    if before == after:
        typer.echo(f"database schema is up to date ({after})")
    else:
        typer.echo(f"database schema upgraded: {before or 'empty'} → {after}")


@app.command()
def sync(
    ctx: typer.Context,
    tenant: TenantOpt,
    full: Annotated[bool, typer.Option("--full", help="Full resync instead of a delta round.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would change; change nothing.")] = False,
    as_json: JsonOpt = False,
    no_send: NoSendOpt = False,
) -> None:
    """One cycle: read Graph, reconcile, apply, evaluate grace, send notifications."""
    from licsync.daemon import Locks
    from licsync.service import changes_as_rows, sync_once

    c = ctx_of(ctx)
    settings = c.settings
    tcfg = settings.get_tenant(tenant)
    engine = c.engine() if dry_run else writing_engine(c)
    # The same per-tenant lock as the daemon's cycles: never two cycles of one tenant at once.
    with Locks(engine, f"cli:{socket.gethostname()}:{os.getpid()}").hold(tenant, wait=5.0) as got:
        if not got:
            raise TransientError(
                f"another licsync is syncing tenant {tenant} right now (or another process holds the "
                "database locked); try again when it is done"
            )
        result = asyncio.run(
            sync_once(settings, tcfg, engine, now=c.now(), full=full, dry_run=dry_run, show_progress=not as_json)
        )
    if not dry_run:
        send_queued(c, no_send=no_send)
    if as_json:
        out = result.summary()
        out["hold_reason"] = result.hold_reason
        out["changes"] = changes_as_rows(result)
        emit_json(out)
        return
    if dry_run:
        for row in changes_as_rows(result)[:200]:  # in the words of the tenant's seat model
            echo(f"would: {row['sentence']}")
        if len(result.plan.changes()) > 200:
            typer.echo(f"… and {len(result.plan.changes()) - 200} more changes")
        if result.hold_reason:
            echo(f"a real run would hold the frees for approval: {result.hold_reason}")
    typer.echo(result.line())


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    tenant: TenantOpt,
    catalog: Annotated[str | None, typer.Option("--catalog", help="One catalog's figures.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Seat status of a tenant, or of one of its catalogs."""
    c = ctx_of(ctx)
    c.settings.get_tenant(tenant)
    with db.session_scope(c.engine()) as s:
        data = (
            status.catalog_status(s, tenant, catalog, c.now())
            if catalog is not None
            else status.tenant_status(s, tenant, c.now(), c.settings)
        )
    if as_json:
        emit_json(data)
        return
    from licsync.cli.render import print_status

    print_status(data, catalog is not None)


@app.command()
def explain(ctx: typer.Context, tenant: TenantOpt, user_id: str, as_json: JsonOpt = False) -> None:
    """Does this user hold a seat, are they licensed, and why / since when."""
    from licsync.service import explain_user

    c = ctx_of(ctx)
    c.settings.get_tenant(tenant)
    with db.session_scope(c.engine()) as s:
        data = explain_user(s, tenant, user_id, c.now())
    if as_json:
        emit_json(data)
        return
    seat = "holds a seat" if data["holds_seat"] else "holds no seat"
    lic = "licensed" if data["licensed"] else "NOT licensed"
    since = f" since {data['since']}" if data.get("since") else ""
    who = data["user_id"] if data["user_id"] == user_id else f"{user_id} ({data['user_id']})"
    echo(f"{who}: {seat}{since}; {lic} ({data['reason']}) — {data['sentence']}")
    rule_since = f" since {data['seat_reason_since']}" if data.get("seat_reason_since") else ""
    echo(f"  seat rule ({data['model']}): {data['seat_reason']}{rule_since} — {data['seat_sentence']}")
    if data.get("freed_at"):
        echo(f"  last seat freed {data['freed_at']} ({data.get('freed_reason')})")


@app.command("holds")
def holds_cmd(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Mass frees held for approval."""
    c = ctx_of(ctx)
    if tenant:
        c.settings.get_tenant(tenant)
    with db.session_scope(c.engine()) as s:
        rows = status.holds(s, tenant)
    if as_json:
        emit_json([{k: r[k] for k in ("id", "tenant", "created_at", "frees", "reason")} for r in rows])
        return
    if not rows:
        typer.echo("no held mass frees")
    for r in rows:
        echo(f"{r['id']}  {r['tenant']}  {r['created_at']}  frees {r['frees']}: {r['reason']}")


@app.command()
def approve(ctx: typer.Context, hold_id: str, no_send: NoSendOpt = False) -> None:
    """Apply a held mass free at once (users who qualify again by now keep their seat)."""
    from licsync.service import approve_hold

    c = ctx_of(ctx)
    with db.session_scope(writing_engine(c)) as s:
        result = approve_hold(s, c.settings, hold_id, c.now(), actor=actor())
    if result is None:
        raise NotFound(f"no pending hold {hold_id!r} (see `licsync holds`)")
    send_queued(c, no_send=no_send)
    freed, kept = result
    sys.stdout.write(f"{hold_id}: freed {freed} seats; {kept} user(s) qualify again and keep their seat\n")
