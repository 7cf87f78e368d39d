"""CLI: ``licsync purge`` — the retention policy of ``[retention]`` (the daemon runs it daily)."""

from __future__ import annotations

from typing import Annotated

import typer

from licsync.cli.app import app, ctx_of, emit_json


@app.command()
def purge(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Prune history older than retention.audit_days; erase the personal data of users permanently
    deleted more than retention.deleted_user_days ago (their seat history stays, anonymised)."""
    from licsync.retention import purge as run_purge
    from licsync.retention import summary_line

    c = ctx_of(ctx)
    report = run_purge(c.engine(), c.settings, c.now(), dry_run=dry_run)
    if as_json:
        emit_json(report)
    else:
        typer.echo(summary_line(report))
