"""Errors classed by what helps: fix the config, retry later, or give up.

Every error the CLI knows becomes one clear line on stderr and a distinct exit code.
"""

from __future__ import annotations

EXIT_USAGE = 64  # EX_USAGE: unknown command or option, missing argument
EXIT_CONFIG = 78  # EX_CONFIG (sysexits.h)
EXIT_INPUT = 65  # EX_DATAERR
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL
EXIT_FAILURE = 1


class LicsyncError(Exception):
    """Base of every error licsync expects; its message is fit for an admin to read."""

    exit_code = EXIT_FAILURE


class ConfigError(LicsyncError):
    """The configuration is wrong: fix it and start again. ``problems`` lists each, when several."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class InputError(LicsyncError):
    """A file, key or argument given by a person is wrong; nothing was changed."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class TransientError(LicsyncError):
    """Retrying later may help (throttling, 5xx, a lost connection)."""

    exit_code = EXIT_TEMPFAIL

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(LicsyncError):
    """Retrying will not help until a person acts (bad credentials, missing permission)."""


class DeltaTokenExpired(LicsyncError):
    """Graph no longer knows the stored delta token: a full resync is needed."""


class NotFound(LicsyncError):
    """The named tenant, catalog, hold or record does not exist."""

    exit_code = EXIT_INPUT


def truncate(text: str, limit: int = 300) -> str:
    """Shorten an error body before it reaches a log line or a terminal."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
