"""CLI: ``licsync emulator`` — the built-in Microsoft Graph + Entra ID emulator, standalone.

The same emulator the demo and the tests use, served until Ctrl-C (or SIGTERM), so that a first
``licsync sync`` can be tried before an app registration exists. ``--write-config`` writes a
configuration that points a tenant at it (the client secret in a ``file:`` reference beside it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from licsync.cli.app import app


def _config_text(server: Any, tenant: str, admins: list[str], secret_file: Path) -> str:
    lines = [
        "# Written by `licsync emulator --write-config`: a tenant on the built-in Graph emulator.",
        "# Relative paths are relative to this file.",
        "[database]",
        'url = "sqlite:///licsync.db"',
        "",
        "[[tenant]]",
        f'name = "{tenant}"',
        f'tenant_id = "{server.tenant_id}"',
        f'client_id = "{server.client_id}"',
        f'client_secret = "file:{secret_file}"',
        f'authority = "{server.authority}"',
        f'graph_url = "{server.graph_url}"',
        f'ca_bundle = "{server.ca_bundle}"',
        "admins = [" + ", ".join(f'"{a}"' for a in admins) + "]",
        "",
    ]
    return "\n".join(lines)


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")


def _write_enrollments(path: Path, directory: Any, learners: int) -> None:
    """A catalog export as ``licsync import enrollments`` reads it: one course, ``learners`` learners."""
    import csv

    from licsync.catalogs.csv_import import HEADER

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for user in directory.active_users()[:learners]:
            w.writerow(["onboarding", "Onboarding", "o-101", "Welcome to Contoso", "published", user["id"],
                        user["userPrincipalName"], "learner", "2026-01-15T09:00:00Z", ""])


@app.command()
def emulator(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the emulator keeps its CA and secrets.")] = Path(
        "licsync-emulator"
    ),
    users: Annotated[int, typer.Option("--users", min=0, help="Synthetic users in the directory.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic users (same seed, same users).")] = 1,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="HTTPS port; 0 picks a free one.")] = 8443,
    page_size: Annotated[int, typer.Option("--page-size", min=1, max=999, help="Users per Graph page.")] = 200,
    write_config: Annotated[
        Path | None,
        typer.Option("--write-config", help="Write a configuration for a tenant on this emulator to this file."),
    ] = None,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's name in --write-config.")] = "contoso",
    admin: Annotated[
        list[str] | None, typer.Option("--admin", help="An admin address in --write-config (repeat for several).")
    ] = None,
    write_enrollments: Annotated[
        Path | None,
        typer.Option("--write-enrollments", help="Write an enrollment CSV of the first --learners users here."),
    ] = None,
    learners: Annotated[int, typer.Option("--learners", min=0, help="Learners in --write-enrollments.")] = 60,
) -> None:
    """Run the built-in Microsoft Graph emulator (HTTPS, its own CA) until Ctrl-C.

    Prints one JSON line on stdout when ready: base_url, graph_url, authority, ca_bundle,
    tenant_id, client_id, client_secret, control_url. With --write-config, also a configuration
    file for a tenant on it (the secret in a file: reference, never in the file); with
    --write-enrollments, an enrollment CSV of its users for `licsync import enrollments`.
    """
    import signal
    import sys
    import threading

    import orjson

    from licsync.demo import port_free
    from licsync.errors import TransientError
    from licsync.graph.emulator import Directory, EmulatorServer

    if port and not port_free(host, port):
        raise TransientError(f"port {port} on {host} is already in use; choose another: licsync emulator --port "
                             f"{port + 1} (or --port 0 for any free port)")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    directory = Directory()
    if users:
        directory.add_users(users, seed=seed)
    server = EmulatorServer(directory, workdir=workdir, host=host, port=port)
    server.emulator.page_size = page_size
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        if write_enrollments is not None:  # before the configuration: its appearance says "ready"
            _write_enrollments(write_enrollments, directory, learners)
        if write_config is not None:
            secret_file = workdir / "client-secret"
            _write_secret(secret_file, server.client_secret)
            write_config.parent.mkdir(parents=True, exist_ok=True)
            write_config.write_text(
                _config_text(server, tenant, admin or [f"it-admin@{tenant}.example"], secret_file), encoding="utf-8"
            )
        info = {
            "base_url": server.base_url,
            "graph_url": server.graph_url,
            "authority": server.authority,
            "ca_bundle": str(server.ca_bundle),
            "tenant_id": server.tenant_id,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "control_url": f"{server.base_url}/_emulator",
        }
        sys.stdout.write(orjson.dumps(info).decode() + "\n")
        sys.stdout.flush()
        where = f"; configuration written to {write_config}" if write_config is not None else ""
        sys.stderr.write(f"licsync: Graph emulator with {users:,} users at {server.graph_url}{where}. "
                         "Ctrl-C stops it.\n")
        sys.stderr.flush()
        stop.wait()
