"""CLI: the vendor's activation authority (SPEC §5) — serve, import-key, list, move, revoke, token.

These commands need no licsync.toml: everything is on the command line (``--database``). JSON on
stdout for ``list --json`` and the token for ``token``; sentences on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from licsync.cli.app import app, ctx_of, emit_json
from licsync.errors import ConfigError, InputError

authority_app = typer.Typer(help="The vendor's activation authority (one tenant per subscription, across "
                                 "deployments).", no_args_is_help=True)
app.add_typer(authority_app, name="authority")

DatabaseOpt = Annotated[str, typer.Option("--database", help="The authority's database URL (sqlite:/// or "
                                                             "postgresql+psycopg://).")]


def _engine(url: str) -> Any:
    from licsync import db
    from licsync.authority import store
    from licsync.config import DatabaseConfig

    try:
        url = DatabaseConfig(url=url).url
    except ValueError:
        raise ConfigError(f"--database {url!r}: must be sqlite:///PATH or postgresql+psycopg://user@host/db") from None
    engine = db.get_engine(url)
    store.create_schema(engine)
    return engine


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"--private-key {path}: cannot read ({exc.strerror})") from None


@authority_app.command("serve")
def serve(
    ctx: typer.Context,
    database: DatabaseOpt,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to listen on.")],
    private_key: Annotated[Path, typer.Option("--private-key", help="The vendor's vendor.key (signs leases).")],
    lease_days: Annotated[float, typer.Option("--lease-days", help="Lease lifetime in days.")] = 7.0,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate (chain) for https.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key for --tls-cert.")] = None,
) -> None:
    """Run the authority's HTTP service (https; plain http only on loopback, for trials)."""
    import uvicorn

    from licsync.authority import app as authority_http
    from licsync.authority import service
    from licsync.cli.service_cmds import _clock
    from licsync.config import ApiConfig

    try:
        where = ApiConfig(listen=listen)
    except ValueError:
        raise ConfigError(f"--listen {listen!r}: must be HOST:PORT, e.g. 0.0.0.0:8443") from None
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if tls_cert is None and where.host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError("refusing plain http on a non-loopback address: give --tls-cert and --tls-key")
    for p in (tls_cert, tls_key):
        if p is not None and not p.is_file():
            raise ConfigError(f"{p}: no such file")
    signer = service.signer_from_pem(_read_key(private_key), lease_days)
    engine = _engine(database)
    with engine.begin() as conn:
        service.bind_vendor_key(conn, signer.public_key_b64)
    web = authority_http.create_app(engine, signer, _clock(ctx_of(ctx)))
    scheme = "https" if tls_cert else "http"
    sys.stderr.write(f"activation authority on {scheme}://{listen} (leases of {lease_days:g} days)\n")
    uvicorn.run(web, host=where.host, port=where.port, log_level="warning", access_log=False,
                ssl_certfile=str(tls_cert) if tls_cert else None, ssl_keyfile=str(tls_key) if tls_key else None,
                timeout_graceful_shutdown=5)


@authority_app.command("import-key")
def import_key(
    ctx: typer.Context,
    database: DatabaseOpt,
    key: Annotated[str, typer.Argument(help="The signed subscription key, or - to read it from stdin.")],
    private_key: Annotated[Path | None, typer.Option("--private-key", help="vendor.key, the first time: "
                                                     "records its public half in the database.")] = None,
) -> None:
    """Make a subscription known to the authority (a newer key of it replaces the older)."""
    from licsync.authority import service

    engine = _engine(database)
    text = sys.stdin.read() if key == "-" else key
    with engine.begin() as conn:
        if private_key is not None:
            service.bind_vendor_key(conn, service.signer_from_pem(_read_key(private_key)).public_key_b64)
        out = service.import_key(conn, text, ctx_of(ctx).now())
    sys.stderr.write(f"subscription {out['subscription_id']} ({out['customer']}, {out['seats']} seats): "
                     f"{out['outcome']}\n")


@authority_app.command("list")
def list_cmd(
    database: DatabaseOpt,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: one object per activation.")] = False,
) -> None:
    """Every activation: subscription, tenant id, deployment id, when, lease expiry and state."""
    from licsync.authority import service

    with _engine(database).connect() as conn:
        rows = service.list_activations(conn)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['subscription_id']}  {r['state']:<11} tenant {r['tenant_id']}  deployment "
                   f"{r['deployment_id']}  renewed {r['renewed_at'] or '-'}  "
                   f"lease until {r['lease_expires_at'] or '-'}")


@authority_app.command("move")
def move(
    ctx: typer.Context,
    database: DatabaseOpt,
    subscription_id: Annotated[str, typer.Argument(help="The subscription id.")],
    tenant_id: Annotated[str, typer.Option("--tenant-id", help="The Entra tenant id (GUID) it moves to.")],
) -> None:
    """Move a subscription to another tenant: its current deployment's next renewal is refused "moved"."""
    from licsync.authority import service

    with _engine(database).begin() as conn:
        out = service.move(conn, subscription_id, tenant_id, ctx_of(ctx).now())
    sys.stderr.write(f"subscription {subscription_id} → tenant {out['tenant_id']}: {out['outcome']}\n")


@authority_app.command("revoke")
def revoke(
    ctx: typer.Context,
    database: DatabaseOpt,
    subscription_id: Annotated[str, typer.Argument(help="The subscription id.")],
) -> None:
    """Revoke a subscription: renewals and activations are refused from now on."""
    from licsync.authority import service

    with _engine(database).begin() as conn:
        service.revoke(conn, subscription_id, ctx_of(ctx).now())
    sys.stderr.write(f"subscription {subscription_id} revoked\n")


@authority_app.command("token")
def token(
    ctx: typer.Context,
    database: DatabaseOpt,
    label: Annotated[str | None, typer.Option("--label", help="Who or what the token is for.")] = None,
) -> None:
    """Create a vendor token for the HTTP list/move/revoke endpoints; prints only the token."""
    from licsync.authority import service

    with _engine(database).begin() as conn:
        sys.stdout.write(service.create_vendor_token(conn, ctx_of(ctx).now(), label) + "\n")
