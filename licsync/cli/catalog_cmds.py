"""``licsync import enrollments|activations`` and ``licsync catalog remove-learner``: parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from licsync.cli.app import app, ctx_of, emit_json
from licsync.cli.escape import echo
from licsync.cli.writes import NoSendOpt, actor, send_queued, writing_engine

import_app = typer.Typer(name="import", help="Import facts from files (enrollments, …).", no_args_is_help=True)
catalog_app = typer.Typer(name="catalog", help="Course catalogs and their learner lists.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(catalog_app, name="catalog")

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant's name in the configuration.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary line.")]


@import_app.command("enrollments")
def import_enrollments_cmd(
    ctx: typer.Context,
    tenant: TenantOpt,
    file: Annotated[Path, typer.Argument(help="CSV file; see `licsync import enrollments --help` for the header.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="The file is the whole truth: remove enrollments absent from it.")
    ] = False,
    as_json: JsonOpt = False,
    no_send: NoSendOpt = False,
) -> None:
    """Import course enrollments and admin assignments; re-plan the affected users' seats at once.

    Header: catalog_id,catalog_name,course_id,course_title,course_status,
    user_id,user_principal_name,role,enrolled_at,expires_at (one line).
    """
    from licsync.db import session_scope
    from licsync.service import import_enrollments

    c = ctx_of(ctx)
    settings = c.settings
    settings.get_tenant(tenant)
    with session_scope(writing_engine(c)) as session:
        result = import_enrollments(session, settings, tenant, file, replace=replace, now=c.now(),
                                    actor=actor())
    send_queued(c, no_send=no_send)
    if as_json:
        emit_json(result.summary())
    else:
        typer.echo(result.line())


@import_app.command("activations")
def import_activations_cmd(
    ctx: typer.Context,
    tenant: TenantOpt,
    file: Annotated[Path, typer.Argument(help="CSV file: user_id,display_name,product,activated_at,deactivated_at")],
    replace: Annotated[
        bool, typer.Option("--replace", help="The file is the whole truth: deactivate accounts absent from it.")
    ] = False,
    as_json: JsonOpt = False,
    no_send: NoSendOpt = False,
) -> None:
    """Import add-on accounts that count on activation (Flow365); each holds a seat until deactivated.

    Header: user_id,display_name,product,activated_at,deactivated_at (dates ISO-8601; an empty
    deactivated_at means active). A bad file is refused whole, each problem with its line.
    """
    from licsync.db import session_scope
    from licsync.service import import_activations

    c = ctx_of(ctx)
    c.settings.get_tenant(tenant)
    with session_scope(writing_engine(c)) as session:
        result = import_activations(session, c.settings, tenant, file, replace=replace, now=c.now(),
                                    actor=actor())
    send_queued(c, no_send=no_send)
    if as_json:
        emit_json(result.summary())
    else:
        echo(result.line())


@catalog_app.command("remove-learner")
def remove_learner_cmd(
    ctx: typer.Context,
    tenant: TenantOpt,
    catalog: Annotated[str, typer.Option("--catalog", help="The catalog id.")],
    user_id: Annotated[str, typer.Argument(help="The user's directory object id.")],
    as_json: JsonOpt = False,
    no_send: NoSendOpt = False,
) -> None:
    """Remove a user from a catalog's learner list, and so from all of its training."""
    from licsync.db import session_scope
    from licsync.service import remove_learner

    c = ctx_of(ctx)
    settings = c.settings
    settings.get_tenant(tenant)
    with session_scope(writing_engine(c)) as session:
        result = remove_learner(session, settings, tenant, catalog, user_id, c.now(), actor=actor())
    send_queued(c, no_send=no_send)
    if as_json:
        emit_json(result.summary())
    else:
        echo(result.line())
