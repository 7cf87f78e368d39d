"""``licsync import enrollments`` and ``licsync catalog remove-learner``: parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from licsync.cli.app import app, ctx_of, emit_json
from licsync.cli.escape import echo

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
) -> None:
    """Import course enrollments and admin assignments; re-plan the affected users' seats at once.

    Header: catalog_id,catalog_name,course_id,course_title,course_status,
    user_id,user_principal_name,role,enrolled_at,expires_at (one line).
    """
    from licsync.catalogs.csv_import import import_enrollments
    from licsync.db import session_scope

    c = ctx_of(ctx)
    settings = c.settings
    settings.get_tenant(tenant)
    with session_scope(c.engine()) as session:
        result = import_enrollments(session, settings, tenant, file, replace=replace, now=c.now())
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
) -> None:
    """Remove a user from a catalog's learner list, and so from all of its training."""
    from licsync.catalogs.learners import remove_learner
    from licsync.db import session_scope

    c = ctx_of(ctx)
    settings = c.settings
    settings.get_tenant(tenant)
    with session_scope(c.engine()) as session:
        result = remove_learner(session, settings, tenant, catalog, user_id, c.now())
    if as_json:
        emit_json(result.summary())
    else:
        echo(result.line())
