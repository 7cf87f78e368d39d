"""What follows a change, inside the change's own transaction: grace evaluation and notifications.

The sync cycle, activation and the CLI call these so that an event's email is enqueued in the
same transaction as the change that caused it (nothing announced that did not happen, nothing
that happened left unannounced).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from licsync.config import Settings


def on_activation(session: Session, settings: Settings, result: Any, now: datetime) -> None:
    """A subscription was activated; when it moved, the first tenant's admins hear of it."""


def after_apply(session: Session, settings: Settings, tenant: str, now: datetime, *, cycle_id: int | None,
                hold_id: str | None) -> None:
    """After a cycle's seats moved: evaluate grace and announce thresholds, grace and holds."""
    from licsync import reconcile
    from licsync.subscriptions import registry

    registry.evaluate_grace(session, tenant, reconcile.consumed(session, tenant), now, cycle_id=cycle_id)
