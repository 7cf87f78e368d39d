"""Is licsync alive here? ``licsync health`` (the heartbeat rows) and ``licsync healthcheck``
(``/healthz`` of the local API, else the heartbeat): the probes of containers and units."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from licsync.config import Settings
from licsync.db.models import Heartbeat
from licsync.errors import truncate

HEARTBEAT_EVERY = timedelta(seconds=15)  # the daemon's heartbeat row
STALE_AFTER = HEARTBEAT_EVERY * 3  # `licsync health` and /healthz: older than this is dead
LEASE_PREFIX = "lease:"


def probe_host(host: str) -> str:
    """Where a local probe reaches an API bound to ``host``: loopback for the wildcard addresses."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - a bind address read from config, not one we bind
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def probe_healthz(settings: Settings, *, timeout: float = 5.0) -> tuple[bool, bool, str]:
    """GET ``/healthz`` on this host's API: (something answered, healthy, one line why)."""
    host = probe_host(settings.api.host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{settings.api.port}/healthz"
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            resp = client.get(url)
    except httpx.ConnectError:
        return False, False, f"nothing listens on {url}"
    except httpx.HTTPError as exc:
        return True, False, f"{url}: {type(exc).__name__}"
    if resp.status_code == 200:
        return True, True, f"ok: {url} answered 200"
    return True, False, f"{url} answered {resp.status_code}: {truncate(resp.text, 200)}"



def _pid_alive(pid: str) -> bool:
    """Whether a process of this host (and PID namespace) still runs; unknown counts as alive."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def instance_alive(instance: str) -> bool:
    """A ``host:pid`` instance of this host is alive only while its process exists; others are
    taken at their heartbeat's word."""
    here = f"{socket.gethostname()[:100]}:"
    return not instance.startswith(here) or _pid_alive(instance[len(here) :])


def heartbeat_status(engine: Engine, *, prefix: str | None = None, now: datetime | None = None) -> tuple[bool, str]:
    """``licsync health``: (healthy, one line why). Looks at this host's daemons unless ``prefix``."""
    now = now or datetime.now(UTC)
    prefix = f"{socket.gethostname()[:100]}:" if prefix is None else prefix
    try:
        with Session(engine) as s:
            s.execute(text("SELECT 1"))
            rows = [r for r in s.exec(select(Heartbeat)).all()
                    if not r.instance.startswith(LEASE_PREFIX) and r.instance.startswith(prefix)]
    except DBAPIError as exc:
        return False, f"database unavailable: {truncate(str(exc.orig), 200)}"
    if not rows:
        return False, f"no heartbeat from a daemon on {prefix.rstrip(':') or 'any host'}: is `licsync run` running?"
    alive = [r for r in rows if instance_alive(r.instance)]
    if not alive:  # e.g. a daemon that abandoned a cycle on SQLite could not delete its row on the way out
        last = max(rows, key=lambda r: r.beat_at)
        return False, f"no live daemon on this host (last was {last.instance}, its process is gone)"
    newest = max(alive, key=lambda r: r.beat_at)
    age = (now - newest.beat_at).total_seconds()
    if age > STALE_AFTER.total_seconds():
        return False, f"heartbeat of {newest.instance} is {age:.0f}s old (stale after {STALE_AFTER.seconds}s)"
    return True, f"ok: {newest.instance} beat {age:.0f}s ago"
