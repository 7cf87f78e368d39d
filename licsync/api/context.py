"""What every endpoint needs (``app.state.ctx``) and where the web assets are: shared by the app,
its routes and its pages without importing one another's modules in a circle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from licsync.api.auth import Authenticator, LoginCodes
from licsync.config import Settings

WEB = Path(__file__).resolve().parent.parent / "web"
Liveness = Callable[[], tuple[bool, dict[str, Any]]]


@dataclass
class ApiContext:
    """What every endpoint needs, kept on ``app.state.ctx``."""

    settings: Settings
    engine: Engine
    auth: Authenticator
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    liveness: Liveness | None = None  # set by the daemon: is the scheduler's heartbeat fresh?
    inline_reads: bool = False  # the access check may read on the event loop (SQLite: local, never waits)
    reads: Engine | None = None  # read-only endpoints' engine (PostgreSQL: autocommit), else ``engine``
    login_codes: LoginCodes = field(default_factory=LoginCodes)  # one-time dashboard sign-in codes
