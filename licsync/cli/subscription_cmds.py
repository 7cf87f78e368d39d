"""CLI: vendor key tools, subscription keys and activation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from licsync import db
from licsync.cli.app import app, ctx_of
from licsync.cli.escape import echo
from licsync.cli.writes import NoSendOpt, actor, send_queued, writing_engine
from licsync.errors import InputError

sub_app = typer.Typer(help="Vendor tools: key pairs and signed subscription keys.", no_args_is_help=True)
app.add_typer(sub_app, name="subscription")


@sub_app.command("keygen")
def keygen(out: Annotated[Path, typer.Option("--out", help="Directory for vendor.key and vendor.pub.")]) -> None:
    """Write a vendor key pair (vendor.key, vendor.pub); never overwrites one."""
    from licsync.subscriptions import keys

    out.mkdir(parents=True, exist_ok=True)
    private, public = keys.keygen(out)
    sys.stderr.write(f"wrote {private} (keep it secret) and {public} (goes into [vendor] public_key)\n")


@sub_app.command("issue")
def issue(
    ctx: typer.Context,
    private_key: Annotated[Path, typer.Option("--private-key", help="The vendor's vendor.key.")],
    sub_id: Annotated[str, typer.Option("--id", help="Subscription id.")],
    customer: Annotated[str, typer.Option("--customer", help="Customer name.")],
    seats: Annotated[int, typer.Option("--seats", help="Seat count.")],
    starts: Annotated[str, typer.Option("--starts", help="First day (or ISO instant) of validity.")],
    ends: Annotated[str, typer.Option("--ends", help="Last valid day (UTC); expires at the start of the next.")],
    policy: Annotated[
        str, typer.Option("--policy", help="enrollment|live_enrollment|first_access|role")
    ] = "enrollment",
    overage: Annotated[str, typer.Option("--overage", help="grace|block|tiered|bill")] = "grace",
    grace_days: Annotated[int, typer.Option("--grace-days")] = 14,
    reuse_limit: Annotated[int | None, typer.Option("--reuse-limit", help="live_enrollment: reuses per year.")] = None,
    tiers: Annotated[str | None, typer.Option("--tiers", help="Seat ladder, e.g. 1000,2000,5000.")] = None,
    pools: Annotated[str | None, typer.Option("--pools", help="role: e.g. elearn=100,weclimb=50.")] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id", help="Bind the key to this Entra tenant id "
                                                  "(customers without an activation authority).")] = None,
    authority: Annotated[str | None, typer.Option("--authority", help="https URL of the activation authority "
                                                  "the key must be activated through.")] = None,
) -> None:
    """Sign a subscription key; prints only the key on stdout."""
    from licsync.subscriptions import keys, terms

    try:
        pem = private_key.read_bytes()
    except OSError as exc:
        raise InputError(f"--private-key {private_key}: cannot read ({exc.strerror})") from None
    extras: dict[str, object] = {}
    if reuse_limit is not None:
        extras["reuse_limit"] = reuse_limit
    if tiers:
        extras["tiers"] = terms.parse_tiers(tiers)
    if pools:
        extras["pools"] = terms.parse_pools(pools)
    if tenant_id is not None:
        from licsync.authority.lease import tenant_guid

        extras["tenant_id"] = tenant_guid(tenant_id, "--tenant-id")
    if authority is not None:
        extras["authority"] = authority.rstrip("/")
    t = terms.Terms(
        id=sub_id,
        customer=customer,
        seats=seats,
        starts_at=terms.parse_starts(starts),
        ends_at=terms.parse_ends(ends),
        issued_at=ctx_of(ctx).now(),
        policy=policy,
        overage=overage,
        grace_days=grace_days,
        extras=terms.FrozenMap(extras),
    )
    sys.stdout.write(keys.issue(pem, t) + "\n")


@app.command()
def activate(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's name from the configuration.")],
    key: Annotated[str, typer.Argument(help="The signed key, or - to read it from stdin.")],
    no_send: NoSendOpt = False,
) -> None:
    """Verify a subscription key and make it active on this tenant (deactivating it elsewhere)."""
    from licsync.service import activate as activate_key

    c = ctx_of(ctx)
    settings = c.settings
    settings.get_tenant(tenant)
    text = sys.stdin.read() if key == "-" else key
    now = c.now()
    with db.session_scope(writing_engine(c)) as s:
        result = activate_key(s, settings, tenant, text, now, actor=actor())
    send_queued(c, no_send=no_send)
    echo(result.sentence)
