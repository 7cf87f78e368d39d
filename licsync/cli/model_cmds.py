"""CLI of the seat models (SPEC §5 "Seat-model commands"): imports, reports, candidate duplicates.

``licsync import activity|roles|orgs|users``, ``licsync report consumption|pools|orgs|users|model``,
``licsync duplicates [--tenant NAME]`` and ``licsync duplicates confirm|dismiss ID``. Each parses
its arguments and calls ``licsync.seat_models``; nothing else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from licsync.cli.app import app, ctx_of, emit_json
from licsync.cli.catalog_cmds import import_app
from licsync.cli.escape import clean, echo, write_text
from licsync.cli.writes import NoSendOpt, actor, send_queued, writing_engine
from licsync.errors import InputError

report_app = typer.Typer(name="report", help="Seat-model reports (consumption, pools, orgs, …).",
                         no_args_is_help=True)
duplicates_app = typer.Typer(name="duplicates", help="Candidate duplicate learners (first_access).",
                             invoke_without_command=True)
app.add_typer(report_app, name="report")
app.add_typer(duplicates_app, name="duplicates")

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's name in the configuration.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV (to open in a spreadsheet).")]
FileArg = Annotated[Path, typer.Argument(help="CSV file (UTF-8); see --help for its header.")]


def _session(ctx: typer.Context, tenant: str | None, *, writes: bool = False) -> tuple[Any, Any]:
    from licsync.db import session_scope

    c = ctx_of(ctx)
    if tenant is not None:
        c.settings.get_tenant(tenant)
    return c, session_scope(writing_engine(c) if writes else c.engine())


def _out(result: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result.summary())
    else:
        echo(result.line())


# --------------------------------------------------------------------------- imports


@import_app.command("activity")
def import_activity_cmd(ctx: typer.Context, tenant: TenantOpt, file: FileArg, as_json: JsonOpt = False,
                        no_send: NoSendOpt = False) -> None:
    """Import launches / first interactions (first_access); the first one in the period consumes a seat.

    Header: activity_id,user_id,first_name,last_name,email,content_id,content_title,occurred_at
    """
    from licsync.service import import_activity

    c, scope = _session(ctx, tenant, writes=True)
    with scope as s:
        result = import_activity(s, c.settings, tenant, file, c.now(), actor=actor())
    send_queued(c, no_send=no_send)
    _out(result, as_json)


@import_app.command("roles")
def import_roles_cmd(
    ctx: typer.Context,
    tenant: TenantOpt,
    file: FileArg,
    replace: Annotated[bool, typer.Option("--replace", help="The file is the whole truth: remove absent roles.")]
    = False,
    as_json: JsonOpt = False,
    no_send: NoSendOpt = False,
) -> None:
    """Give (and with --replace take) roles; each role takes its pools' seats or is refused. Header: user_id,role"""
    from licsync.service import import_roles

    c, scope = _session(ctx, tenant, writes=True)
    with scope as s:
        result = import_roles(s, c.settings, tenant, file, replace=replace, now=c.now(), actor=actor())
    send_queued(c, no_send=no_send)
    if as_json:
        emit_json(result.summary())
        return
    echo(result.line())
    for d in result.plan.refused:
        echo(f"refused: {d.sentence} ({d.reason})")


@import_app.command("orgs")
def import_orgs_cmd(ctx: typer.Context, tenant: TenantOpt, file: FileArg, as_json: JsonOpt = False) -> None:
    """Import the organisation tree (replaces it). Header: org_id,org_name,parent_id,user_limit,catalog_id"""
    from licsync.seat_models.org_store import import_orgs

    c, scope = _session(ctx, tenant, writes=True)
    with scope as s:
        result = import_orgs(s, tenant, file, c.now(), actor=actor())
    _out(result, as_json)


@import_app.command("users")
def import_users_cmd(
    ctx: typer.Context,
    tenant: TenantOpt,
    file: FileArg,
    sync: Annotated[bool, typer.Option("--sync", help="Delete the users absent from the file (else: preview).")]
    = False,
    as_json: JsonOpt = False,
    no_send: NoSendOpt = False,
) -> None:
    """Sync CSV of the platform's users (header user_id,user_principal_name; see `licsync report users`).

    With --sync, every user absent from the file is deleted with their enrollments, and their seats
    are freed behind the mass-free guard. Without it, prints who would be deleted and changes nothing.
    """
    from licsync.service import sync_users

    c, scope = _session(ctx, tenant, writes=sync)
    with scope as s:
        result = sync_users(s, c.settings, tenant, file, apply=sync, now=c.now(), actor=actor())
    if sync:
        send_queued(c, no_send=no_send)
    if as_json:
        emit_json(result.summary())
        return
    if not sync:
        for u in result.deleted[:50]:
            echo(f"would delete: {u}")
    echo(result.line())


# --------------------------------------------------------------------------- reports


@report_app.command("consumption")
def report_consumption(ctx: typer.Context, tenant: TenantOpt, as_csv: CsvOpt = False, as_json: JsonOpt = False) -> None:
    """License consumption (first_access): each learner's first content and date; billing figures."""
    from licsync.seat_models import access_store
    from licsync.seat_models.csvfile import to_csv
    from licsync.seat_models.first_access import REPORT_COLUMNS

    c, scope = _session(ctx, tenant)
    with scope as s:
        rows = access_store.consumption_report(s, tenant)
        figures = access_store.figures(s, tenant, c.now())
    if as_csv:
        write_text(to_csv((*REPORT_COLUMNS, "duplicate_of"), rows))  # type: ignore[arg-type]
    elif as_json:
        emit_json({"tenant": tenant, **figures, "learners": rows})
    else:
        from rich.console import Console

        figures = clean(figures, markup=True)
        p = figures["period"]
        colour = "red" if figures["available"] < 0 else "green"
        Console().print(f"{tenant} — license period {p['starts_at']} → {p['ends_at']} ({p['days_remaining']} days "
                        f"remaining)\npurchased {figures['purchased']}  consumed {figures['consumed']}  available "
                        f"[{colour}]{figures['available']}[/{colour}]  overage {figures['overage']}\n"
                        f"confirmed duplicates {figures['confirmed_duplicates']}  billable {figures['billable']}  "
                        f"billable overage {figures['billable_overage']}  candidate duplicates "
                        f"{figures['candidate_duplicates']}", highlight=False)
        for r in rows[:50]:
            dup = f"  (duplicate of {r['duplicate_of']})" if r["duplicate_of"] else ""
            echo(f"{r['activity_id']}  {r['first_name']} {r['last_name']}  {r['first_content']}  "
                       f"{r['first_access_at']}{dup}")
        if len(rows) > 50:
            echo(f"… and {len(rows) - 50} more (--csv for all)")


@report_app.command("pools")
def report_pools(
    ctx: typer.Context,
    tenant: TenantOpt,
    as_json: JsonOpt = False,
    refresh: Annotated[bool, typer.Option("--refresh-sign-ins", help="Read signInActivity from Graph first.")]
    = False,
    days: Annotated[int | None, typer.Option("--inactive-days", min=1, help="No sign-in for this many days.")]
    = None,
) -> None:
    """Per pool (role): total, assigned, available, usage %, and inactive assignments."""
    from licsync.seat_models import role_store

    c, scope = _session(ctx, tenant)
    if refresh:
        asyncio.run(role_store.refresh_sign_ins(c.settings.get_tenant(tenant), c.engine(), c.now()))
    with scope as s:
        report = role_store.pool_report(s, c.settings, tenant, c.now(), days)
    if as_json:
        emit_json(report["pools"])
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("pool", "total", "assigned", "available", "usage %", "inactive")
    for p in report["pools"]:
        t.add_row(clean(p["pool"], markup=True), str(p["total"]), str(p["assigned"]), str(p["available"]),
                  "-" if p["usage_pct"] is None else f"{p['usage_pct']}",
                  "unknown" if p["inactive"] is None else str(p["inactive"]))
    Console().print(t)
    if report["inactive"] is None:
        echo("inactive assignments: unknown until sign-ins are read (--refresh-sign-ins)")
    for x in (report["inactive"] or [])[:50]:
        echo(f"inactive: {x['user_id']} ({x['pool']}), last sign-in {x['last_sign_in_at'] or 'never'}")


@report_app.command("orgs")
def report_orgs(ctx: typer.Context, tenant: TenantOpt, as_csv: CsvOpt = False, as_json: JsonOpt = False) -> None:
    """User license report per organisation, children rolled up into parents."""
    from licsync.seat_models import org_store
    from licsync.seat_models.csvfile import to_csv
    from licsync.seat_models.orgs import REPORT_COLUMNS

    c, scope = _session(ctx, tenant)
    with scope as s:
        rows = org_store.org_report(s, tenant, c.now())
    if as_csv:
        write_text(to_csv(REPORT_COLUMNS, [r.as_dict() for r in rows]))
    elif as_json:
        emit_json([r.as_dict() for r in rows])
    else:
        for r in rows:
            pct = "-" if r.percentage_used is None else f"{r.percentage_used}%"
            echo(f"{'  ' * r.depth}{r.name}: limit {r.user_limit}, used {r.used}, remaining {r.remaining}, {pct}")


@report_app.command("users")
def report_users(ctx: typer.Context, tenant: TenantOpt) -> None:
    """The platform's users as CSV (user_id,user_principal_name): edit, then `import users --sync`."""
    from licsync.seat_models.csvfile import to_csv
    from licsync.seat_models.live_store import USERS_HEADER, platform_users

    _c, scope = _session(ctx, tenant)
    with scope as s:
        users = platform_users(s, tenant)
    write_text(to_csv(USERS_HEADER, [[u, upn] for u, upn in users]))


@report_app.command("model")
def report_model(ctx: typer.Context, tenant: TenantOpt, as_json: JsonOpt = False) -> None:
    """What the tenant's seat model adds to status: reuses, overage tier, upgrade, billing or pools."""
    from licsync.seat_models.models import for_tenant

    c, scope = _session(ctx, tenant)
    with scope as s:
        terms, model = for_tenant(s, tenant)
        block = model.status_block(s, c.settings, tenant, terms, c.now())
    if as_json:
        emit_json(block)
        return
    echo(f"{tenant}: seat model {block['model']}")
    for key, value in block.items():
        if key == "model":
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {v}" for k, v in value.items() if v not in (None, [], {}) and k != "history")
            echo(f"  {key}: {inner}")
        elif isinstance(value, list):
            echo(f"  {key}: {len(value)}")
            for item in value[:50]:
                echo("    " + ", ".join(f"{k} {v}" for k, v in item.items()))
        else:
            echo(f"  {key}: {value}")


# --------------------------------------------------------------------------- duplicates


@duplicates_app.callback()
def duplicates_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="The tenant's name in the configuration.")] = None,
    include_all: Annotated[bool, typer.Option("--all", help="Also confirmed and dismissed ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List candidate duplicates of a tenant; `duplicates confirm|dismiss ID` decides one."""
    if ctx.invoked_subcommand is not None:
        return
    if tenant is None:
        raise InputError("licsync duplicates needs --tenant NAME (or a subcommand: confirm ID, dismiss ID)")
    from licsync.seat_models import access_store

    _c, scope = _session(ctx, tenant)
    with scope as s:
        rows = access_store.list_duplicates(s, tenant, include_decided=include_all)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo("no candidate duplicates")
    for d in rows:
        a, b = d["a"], d["b"]
        echo(f"{d['id']}  [{d['status']}] {a['activity_id']} ({a['first_name']} {a['last_name']}, "
                   f"{a['email'] or '-'}) ~ {b['activity_id']} ({b['first_name']} {b['last_name']}, "
                   f"{b['email'] or '-'}): same {' and '.join(d['matched_on'])}")


def _decide(ctx: typer.Context, candidate_id: str, decision: str, as_json: bool) -> None:
    from licsync.seat_models import access_store

    c, scope = _session(ctx, None, writes=True)
    with scope as s:
        out = access_store.decide_duplicate(s, candidate_id, decision, c.now(), actor=actor())
    if as_json:
        emit_json(out)
    else:
        echo(f"{out['id']}: {out['activity_a']} ~ {out['activity_b']} {out['status']} "
                   f"(was {out['previous']}); nothing was merged")


@duplicates_app.command("confirm")
def duplicates_confirm(ctx: typer.Context, candidate_id: str, as_json: JsonOpt = False) -> None:
    """Confirm a candidate: reported as a duplicate, shown separately in billing; never merged."""
    _decide(ctx, candidate_id, "confirm", as_json)


@duplicates_app.command("dismiss")
def duplicates_dismiss(ctx: typer.Context, candidate_id: str, as_json: JsonOpt = False) -> None:
    """Dismiss a candidate: two different learners."""
    _decide(ctx, candidate_id, "dismiss", as_json)
