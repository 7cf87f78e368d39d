"""Progress of a long Graph read, as a person or a log collector sees it.

On a terminal: one rich line that redraws — pages, users read, users per second, time elapsed.
Elsewhere (cron, a pipe, a container log): a JSON log line on stderr every ``every`` seconds, in
the shape of licsync's other log lines, so a 40k-user sync is not silent for minutes.

``SyncProgress`` is the ``progress(pages, users)`` callback that ``licsync.sync.run_cycle`` takes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any

import orjson
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

DEFAULT_EVERY = 30.0  # seconds between log lines off a terminal


def _rate(users: int, elapsed: float) -> float:
    return users / elapsed if elapsed > 0 else 0.0


class SyncProgress:
    """Context manager and callback: ``with SyncProgress("contoso") as p: run_cycle(..., progress=p)``."""

    def __init__(
        self,
        tenant: str,
        *,
        stream: IO[str] | None = None,
        terminal: bool | None = None,
        every: float = DEFAULT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant = tenant
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = self._stream.isatty() if terminal is None else terminal
        self._every = every
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        self._bar: Progress | None = None
        self._task: Any = None
        self.pages = self.users = 0

    def __enter__(self) -> SyncProgress:
        self._started = self._last_line = self._clock()
        if self._terminal:
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.fields[pages]:,} pages, [bold]{task.fields[users]:,}[/bold] users read"),
                TextColumn("{task.fields[rate]:,.0f} users/s"),
                TimeElapsedColumn(),
                console=Console(file=self._stream, force_terminal=True),
                transient=True,
                refresh_per_second=8,
            )
            self._bar.start()
            self._task = self._bar.add_task(f"{self.tenant}: reading Graph", total=None, pages=0, users=0, rate=0.0)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, pages: int, users: int) -> None:
        self.pages, self.users = pages, users
        now = self._clock()
        elapsed = now - self._started
        if self._bar is not None:
            self._bar.update(self._task, pages=pages, users=users, rate=_rate(users, elapsed))
        elif now - self._last_line >= self._every:
            self._last_line = now
            self._stream.write(self.log_line(elapsed) + "\n")
            self._stream.flush()

    def log_line(self, elapsed: float) -> str:
        return orjson.dumps({
            "event": "graph_read_progress",
            "level": "info",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "tenant": self.tenant,
            "pages": self.pages,
            "users": self.users,
            "users_per_second": round(_rate(self.users, elapsed), 1),
            "elapsed_seconds": round(elapsed, 1),
        }).decode()
