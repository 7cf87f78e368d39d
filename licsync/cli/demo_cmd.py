"""CLI: ``licsync demo`` — the product on the embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from licsync.cli.app import app, ctx_of


@app.command()
def demo(
    ctx: typer.Context,
    users: Annotated[int, typer.Option("--users", min=100, help="Size of the synthetic tenant.")] = 12_000,
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the demo keeps its state.")] = Path(
        "licsync-demo"
    ),
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the dashboard afterwards.")] = True,
    port: Annotated[int, typer.Option("--port", help="Dashboard port on 127.0.0.1.")] = 8080,
) -> None:
    """A self-contained demonstration: Graph emulator, sync, status, dashboard (no config needed)."""
    from licsync.demo import run_demo

    run_demo(workdir.resolve(), users, serve, port, ctx_of(ctx).now().replace(microsecond=0))
