"""Root of the CLI: global options, the shared context, and turning errors into one clear line."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from sqlalchemy.engine import Engine

from licsync import log
from licsync.cli.escape import printable
from licsync.config import Settings, load_settings
from licsync.errors import EXIT_FAILURE, EXIT_USAGE, LicsyncError

# typer ships its own copy of click (typer >= 0.20): the exceptions the parser raises are these, not
# ``click.exceptions.*`` (which is why the dependency is pinned to typer's minor in pyproject.toml).
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # isort: skip

app = typer.Typer(
    name="licsync",
    help="Keep the license seats of a Microsoft 365 learning platform true to the tenant's directory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def parse_instant(value: str) -> datetime:
    """ISO-8601: ``2026-11-22T10:00:00Z``, with an offset, or a date (midnight UTC)."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 instant: {value!r} (e.g. 2026-11-22T10:00:00Z)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass
class Context:
    config_path: Path | None
    now_override: datetime | None
    log_level: str | None = None  # --log-level as given; None: the command's default
    _settings: Settings | None = field(default=None, init=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    def now(self) -> datetime:
        return self.now_override or datetime.now(UTC)

    def engine(self, *, check_schema: bool = True) -> Engine:
        from licsync import db

        engine = db.get_engine(self.settings.database.url)
        if check_schema:
            db.require_schema(engine)
        return engine


def ctx_of(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context)
    return obj


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="PATH",
                     help="Configuration file (default: $LICSYNC_CONFIG, then ./licsync.toml)."),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option("--now", metavar="ISO-8601", help="Evaluate everything as of this ISO-8601 instant (what-if)."),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning or error (default: info for run and "
                     "serve, else warning)."),
    ] = None,
) -> None:
    log.configure(log_level or "warning")
    if any(k.startswith("OTEL_") for k in os.environ):
        from licsync import otel

        otel.configure()
    try:
        now_override = parse_instant(now) if now else None
    except typer.BadParameter as exc:
        raise typer.BadParameter(exc.message, ctx=ctx, param_hint="'--now'") from None
    ctx.obj = Context(config_path=config, now_override=now_override, log_level=log_level)


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode())
    sys.stdout.write("\n")


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    sys.stderr.write(f"licsync: error: {message}\n")
    raise SystemExit(code)




def _help_label(param: Any, ctx: Any) -> str:
    """What follows an option in ``--help``: its choices, or its name in capitals (``--tenant TENANT``)."""
    label = param.display_type(ctx).strip("<>")
    if "|" in label and not label.startswith("list["):
        return label
    return param.name.upper()


def tidy_help(command: Any, ctx: Any = None) -> Any:
    """Drop typer's ``<str>``/``<bool>`` type labels from every ``--help``: a flag shows nothing after
    its name, an option its value's name (``--tenant TENANT``), an argument its name (``FILE``)."""
    from typer._click.core import Context as ClickContext

    ctx = ctx or ClickContext(command, info_name="licsync")
    for param in command.get_params(ctx):  # with the --help option, which click adds on demand
        if param.param_type_name == "argument":
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = lambda ctx: None  # the name column says it all
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _help_label(param, ctx)
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub, ClickContext(sub, parent=ctx, info_name=sub.name))
    return command


def build_command() -> Any:
    """The click command behind ``licsync``, with the help tidied (see :func:`tidy_help`)."""
    return tidy_help(typer.main.get_command(app))


def _usage_error(exc: UsageError) -> None:
    """One line: the problem, then the ``--help`` to read; exit 64 (SPEC §5)."""
    path = exc.ctx.command_path if exc.ctx is not None else "licsync"
    message = " ".join(printable(exc.format_message()).split())
    sys.stderr.write(f"licsync: usage error: {message} (see '{path} --help')\n")
    raise SystemExit(EXIT_USAGE) from None


def main(argv: list[str] | None = None) -> None:
    """Entry point: every known error becomes one line on stderr and its exit code."""
    try:
        rc = build_command().main(args=argv, prog_name="licsync", standalone_mode=False)
    except LicsyncError as exc:
        msg = printable(str(exc))
        problems = getattr(exc, "problems", None) or []
        sys.stderr.write(f"licsync: error: {msg}\n")
        for p in problems[:50]:
            sys.stderr.write(f"  {printable(str(p))}\n")
        if len(problems) > 50:
            sys.stderr.write(f"  … and {len(problems) - 50} more\n")
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("licsync: interrupted\n")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except NoArgsIsHelpError as exc:  # plain ``licsync`` (or a bare group): the help, and that is no error
        exc.show()
        raise SystemExit(0) from None
    except UsageError as exc:
        _usage_error(exc)
    except typer.Abort:
        raise SystemExit(1) from None
    except Exception as exc:  # the truly unexpected
        sys.stderr.write(f"licsync: internal error: {type(exc).__name__}: {printable(str(exc))} "
                         "(run with --log-level debug)\n")
        raise SystemExit(EXIT_FAILURE) from None
    if isinstance(rc, int) and rc != 0:  # typer.Exit(code) comes back as a return value here
        raise SystemExit(rc)
