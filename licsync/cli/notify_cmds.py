"""CLI: the notification outbox (list, retry, drain) and a test message."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from licsync import db
from licsync.cli.app import app, ctx_of, emit_json
from licsync.cli.escape import echo
from licsync.errors import EXIT_FAILURE, EXIT_TEMPFAIL

if TYPE_CHECKING:
    from licsync.notify.outbox import DrainResult

notifications_app = typer.Typer(help="The notification outbox.", no_args_is_help=True)
notify_app = typer.Typer(help="Send notifications.", no_args_is_help=True)
app.add_typer(notifications_app, name="notifications")
app.add_typer(notify_app, name="notify")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _exit_for(result: DrainResult) -> None:
    """75 when the transport was unavailable (try later), 1 when a message failed for good."""
    if result.stopped:
        raise SystemExit(EXIT_TEMPFAIL)
    if result.failed:
        raise SystemExit(EXIT_FAILURE)


@notifications_app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="pending, sending, sent, failed or skipped.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Messages in the outbox, newest first."""
    from licsync.notify.outbox import list_messages

    with db.session_scope(ctx_of(ctx).engine()) as s:
        rows = list_messages(s, status=status, tenant=tenant, limit=limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo("no notifications")
    for r in rows:
        error = f"  ({r['last_error']})" if r["last_error"] and r["status"] != "sent" else ""
        echo(f"{r['id']}  {r['status']:<8} {r['tenant'] or '-'}  {r['event']}  {r['recipient']}  "
                   f"attempts {r['attempts']}  created {r['created_at']:%Y-%m-%d %H:%M}{error}")


@notifications_app.command("retry")
def retry_cmd(ctx: typer.Context, message_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Put a failed (or skipped) message back in the queue; the next drain sends it."""
    from licsync.notify.outbox import retry

    c = ctx_of(ctx)
    with db.session_scope(c.engine()) as s:
        row = retry(s, message_id, c.now())
    echo(f"notification {row['id']} ({row['event']} to {row['recipient']}) is pending again")


@notifications_app.command("drain")
def drain_cmd(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Send at most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Send the due messages now, through the configured transport."""
    from licsync.notify.factory import build_transport
    from licsync.notify.outbox import drain

    c = ctx_of(ctx)
    engine = c.engine()
    result = asyncio.run(drain(engine, c.settings, build_transport(c.settings, engine=engine), c.now(), limit=limit))
    if as_json:
        emit_json({"sent": result.sent, "skipped": result.skipped, "retrying": result.retrying,
                   "failed": result.failed, "stopped": result.stopped,
                   "deliveries": [asdict(d) for d in result.deliveries]})
    else:
        echo(result.line())
    _exit_for(result)


@notify_app.command("test")
def test_cmd(ctx: typer.Context, tenant: Annotated[str, typer.Option("--tenant", help="The tenant's name.")]) -> None:
    """Queue and send one test message to the tenant's admins; print what happened."""
    from licsync.notify.events import send_test
    from licsync.notify.factory import build_transport
    from licsync.notify.outbox import drain

    c = ctx_of(ctx)
    engine = c.engine()
    with db.session_scope(engine) as s:
        ids = send_test(s, c.settings, tenant, c.now())
    result = asyncio.run(drain(engine, c.settings, build_transport(c.settings, engine=engine), c.now(), ids=ids,
                               limit=len(ids)))
    done = {d.id for d in result.deliveries}
    for d in result.deliveries:
        note = f": {d.error}" if d.error and d.status != "sent" else ""
        echo(f"{d.recipient}: {d.status}{note} (notification {d.id})")
    for i in ids:
        if i not in done:
            echo(f"notification {i}: still pending (the transport stopped first)")
    _exit_for(result)
