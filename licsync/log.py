"""structlog set-up: JSON lines off a TTY, readable lines on one; never a secret."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_SECRET_KEYS = ("secret", "password", "token", "authorization", "assertion", "private_key", "api_key")


def _redact(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Drop any value whose key names a secret, whatever the caller passed by mistake."""
    for key in list(event):
        lk = key.lower()
        if any(s in lk for s in _SECRET_KEYS) and not lk.endswith(("_count", "_id", "_ref")):
            event[key] = "[redacted]"
    return event


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure(level: str = "info", *, json: bool | None = None, stream: Any = None) -> None:
    """Configure structlog. Without ``stream``, each logger writes to the ``sys.stderr`` of the
    moment it is bound, so a replaced stderr (tests, daemons) is never written after closing."""
    probe = stream or sys.stderr
    if json is None:
        json = not (hasattr(probe, "isatty") and probe.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *_args: structlog.PrintLogger(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib logging; keep their noise out unless asked for.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "msal", "uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("licsync").bind(**bind)
