"""The ``licsync`` command line: parses arguments and calls the library, nothing more."""

from __future__ import annotations

# Command groups register themselves on the app when imported.
from licsync.cli import (  # noqa: F401
    authority_cmds,
    catalog_cmds,
    demo_cmd,
    emulator_cmd,
    forecast_cmd,
    model_cmds,
    notify_cmds,
    retention_cmd,
    seat_cmds,
    service_cmds,
    subscription_cmds,
)
from licsync.cli.app import app, main

__all__ = ["app", "main"]
