"""Root of the CLI: global options, the shared context, and turning errors into one clear line."""

from __future__ import annotations

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
from licsync.errors import EXIT_FAILURE, LicsyncError

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
        typer.Option("--config", help="Configuration file (default: $LICSYNC_CONFIG, then ./licsync.toml)."),
    ] = None,
    now: Annotated[
        str | None, typer.Option("--now", help="Evaluate everything as of this ISO-8601 instant (what-if).")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "warning",
) -> None:
    log.configure(log_level)
    ctx.obj = Context(config_path=config, now_override=parse_instant(now) if now else None)


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode())
    sys.stdout.write("\n")


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    sys.stderr.write(f"licsync: error: {message}\n")
    raise SystemExit(code)




def main(argv: list[str] | None = None) -> None:
    """Entry point: every known error becomes one line on stderr and its exit code."""
    try:
        rc = app(args=argv, standalone_mode=False)
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
    except Exception as exc:  # click usage errors and the truly unexpected
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Abort):
            raise SystemExit(1) from None
        sys.stderr.write(f"licsync: internal error: {type(exc).__name__}: {printable(str(exc))} "
                         "(run with --log-level debug)\n")
        raise SystemExit(EXIT_FAILURE) from None
    if isinstance(rc, int) and rc != 0:  # typer.Exit(code) comes back as a return value here
        raise SystemExit(rc)
