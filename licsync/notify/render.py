"""Jinja2 templates of the notifications: one text and one HTML template per event.

``templates/{event}.txt`` starts with a ``Subject:`` line and a blank line; the rest is the plain
text body. ``templates/{event}.html`` extends ``_layout.html`` and is autoescaped, so a catalog
name or an error message can never inject markup. Undefined variables are errors
(``StrictUndefined``): a template that asks for a figure the event did not provide fails in the
tests, not in an admin's inbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

EVENTS = (
    "usage_threshold", "grace_started", "grace_reminder", "grace_ends_tomorrow", "grace_enforced", "grace_ended",
    "subscription_expiring", "subscription_moved", "mass_free_held", "sync_failing", "sync_recovered",
    "overage", "test", "seats_forecast",
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def when(value: datetime | None) -> str:
    """``2026-11-22 10:00 UTC``: one unambiguous form in every message."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def day(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("licsync.notify", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(when=when, day=day, plural=plural)
    return env


def render(event: str, context: Mapping[str, Any]) -> Rendered:
    """Subject, text and HTML of one message of ``event``."""
    if event not in EVENTS:
        raise ValueError(f"no template for event {event!r}")
    env = environment()
    text = env.get_template(f"{event}.txt").render(context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"templates/{event}.txt must start with a 'Subject: ' line")
    subject = " ".join(first.removeprefix("Subject: ").split())
    html = env.get_template(f"{event}.html").render({**context, "subject": subject})
    return Rendered(subject=subject, text=body.lstrip("\n"), html=html)
