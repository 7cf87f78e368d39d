"""What every writing command shares: a ``--now`` that cannot rewrite history, and its mail sent.

* A writing command refuses a ``--now`` earlier than the newest change it has recorded (SPEC §5):
  a what-if in the past would interleave audit rows, seats and grace windows out of order.
  ``--now`` stays free for read-only commands (status, explain, reports) and for dry runs. A
  daemon started with ``--now`` keeps its clock running from that instant, so its changes land a
  little after it: the same ``--now`` given again within :data:`NOW_SLACK` is not "going back".
* The audit names who acted: ``cli:<OS user>`` for the command line (``api:<token label>`` for
  the API).
* A command that queues mail sends it before it exits (SPEC §3); ``--no-send`` only queues. The
  change and its notifications commit together first (the outbox); this then drains the outbox
  through the configured transport, so a cron-driven setup without the daemon still mails people.
  A mail that cannot go out now stays queued with its retry schedule: the command itself
  succeeded, so the exit code does not change; one line on stderr says what happened.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from datetime import timedelta
from typing import Annotated

import typer
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from licsync.cli.app import Context
from licsync.db.models import AuditLog
from licsync.errors import InputError
from licsync.notify.factory import build_transport
from licsync.notify.outbox import drain

NoSendOpt = Annotated[
    bool,
    typer.Option("--no-send", help="Only queue the notifications; the daemon or `licsync notifications drain` "
                 "sends them."),
]
LIMIT = 1000  # one command's worth of mail; more waits for the next drain
NOW_SLACK = timedelta(minutes=5)


def actor() -> str:
    """Who acted, for the audit log: ``cli:<OS user>`` (the uid where no user name is known)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a container's uid with no passwd entry
        return f"cli:uid{os.getuid()}"


def _iso(dt: object) -> str:
    return str(dt).replace("+00:00", "Z").replace(" ", "T")


def writing_engine(c: Context) -> Engine:
    """The engine for a command that writes, after checking that ``--now`` does not go back in time."""
    engine = c.engine()
    if c.now_override is not None:
        with engine.connect() as conn:
            newest = conn.execute(select(func.max(AuditLog.at))).scalar_one_or_none()  # type: ignore[arg-type]
        if newest is not None and c.now_override < newest - NOW_SLACK:
            raise InputError(f"--now {_iso(c.now_override)} is earlier than the newest recorded change "
                             f"({_iso(newest)}); a writing command cannot go back in time (read-only commands "
                             "and --dry-run can)")
    return engine


def send_queued(c: Context, *, no_send: bool) -> None:
    """Send what the outbox holds now (unless ``--no-send``); report on stderr when anything moved."""
    if no_send or c.settings.notifications.transport == "none":
        return
    result = asyncio.run(drain(c.engine(), c.settings, build_transport(c.settings), c.now(), limit=LIMIT))
    if result.sent or result.retrying or result.failed or result.stopped:
        typer.echo(result.line(), err=True)
