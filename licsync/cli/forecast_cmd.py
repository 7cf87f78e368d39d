"""CLI: ``licsync forecast`` — when consumed reaches the seats at the present trend (SPEC §5)."""

from __future__ import annotations

from typing import Annotated

import typer

from licsync import db
from licsync.cli.app import app, ctx_of, emit_json


@app.command("forecast")
def forecast_cmd(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's name from the configuration.")],
    catalog: Annotated[str | None, typer.Option("--catalog", help="One catalog's consumed against the seats.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """When consumed reaches the seats at the present trend (from the daily ledger), with the method used."""
    from licsync.status import forecast_for

    c = ctx_of(ctx)
    c.settings.get_tenant(tenant)
    with db.session_scope(c.engine()) as s:
        f = forecast_for(s, tenant, c.now(), catalog)
    if as_json:
        emit_json(f)
        return
    what = f"{tenant}" + (f" catalog {catalog}" if catalog else "")
    used = f"{f['consumed']} of {f['seats']} seats in use; {f['method']} over {f['history_days']} days of history"
    if f["runs_out_on"] is not None:
        lo, hi = f["range"]
        typer.echo(f"{what}: seats run out on {f['runs_out_on']} (likely {lo} to {hi}) at the present trend; {used}")
    else:
        why = {"not_enough_history": "not enough history yet (at least 14 days of the daily ledger)",
               "not_growing": "consumption is not growing", "no_subscription": "no seats (no active subscription)"}
        typer.echo(f"{what}: no run-out date — {why.get(f['reason'], f['reason'])}; {used}")
