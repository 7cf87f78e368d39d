"""Who receives a notification, and which figures each recipient may see.

Two audiences per tenant:

* **tenant admins** (``[[tenant]] admins``): every figure of the tenant, every catalog.
* **catalog admins** (``[[tenant]] catalog_admins`` and ``catalog.admins`` in the database), for
  the events that change whether their learners can keep working — usage thresholds, grace
  (started, reminders, enforced, ended) and subscription expiry. They see the shared seat pool
  (purchased, consumed, available: every catalog draws from it, and it is what the event is about)
  and the figures of *their own* catalogs. Another catalog's id, name or count never reaches them:
  the rendering context of their message is built from :meth:`Figures.only`, so it is not there to
  leak. Operational events (sync failing, held mass frees, subscription moved, overage billing)
  go to tenant admins only.

An address is compared case-insensitively. Someone who is a tenant admin and a catalog admin gets
the tenant admins' message only; someone who administers two catalogs gets one message with both.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlmodel import Session, select

from licsync import ledger
from licsync.db.models import Catalog, NotificationMark
from licsync.notify.outbox import unique_addresses
from licsync.subscriptions import registry

if TYPE_CHECKING:
    from licsync.config import Settings, TenantConfig


@dataclass(frozen=True)
class CatalogFigure:
    id: str
    name: str
    consumed: int


@dataclass(frozen=True)
class Figures:
    """The seat figures of one tenant at one instant: the source of every number in a message."""

    tenant: str
    purchased: int
    consumed: int
    catalogs: tuple[CatalogFigure, ...] = ()
    subscription_id: str | None = None
    customer: str = ""
    seats: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    grace_days: int = 14

    @property
    def available(self) -> int:
        return max(0, self.purchased - self.consumed)

    @property
    def overage(self) -> int:
        return max(0, self.consumed - self.purchased)

    @property
    def usage_pct(self) -> float | None:
        return None if self.purchased <= 0 else 100.0 * self.consumed / self.purchased

    def only(self, catalog_ids: Iterable[str]) -> Figures:
        """The same figures with only the named catalogs (unknown ones at 0): a catalog admin's view."""
        known = {c.id: c for c in self.catalogs}
        return replace(self, catalogs=tuple(known.get(cid, CatalogFigure(cid, cid, 0)) for cid in sorted(set(
            catalog_ids))))

    def as_context(self) -> dict[str, Any]:
        pct = self.usage_pct
        return {"purchased": self.purchased, "consumed": self.consumed, "available": self.available,
                "overage": self.overage, "usage_pct": None if pct is None else round(pct, 1)}


def load_figures(session: Session, tenant: str, *, purchased: int, consumed: int) -> Figures:
    """The tenant's figures for a message: ``purchased`` and ``consumed`` are the seat model's
    (``SeatModel.figures``, read once by the step that announces), the rest is read here."""
    found = registry.active_subscription(session, tenant)
    terms = found[1] if found is not None else None
    per_catalog = ledger.catalog_consumed(session, tenant)
    names = {c.id: c.name for c in session.exec(select(Catalog).where(Catalog.tenant == tenant))}
    ids = sorted(set(names) | set(per_catalog))
    catalogs = tuple(CatalogFigure(cid, names.get(cid) or cid, per_catalog.get(cid, 0)) for cid in ids)
    if terms is None:
        return Figures(tenant=tenant, purchased=0, consumed=consumed, catalogs=catalogs)
    return Figures(tenant=tenant, purchased=purchased, consumed=consumed, catalogs=catalogs,
                   subscription_id=terms.id, customer=terms.customer, seats=terms.seats,
                   starts_at=terms.starts_at, ends_at=terms.ends_at, grace_days=terms.grace_days)


@dataclass(frozen=True)
class Audience:
    kind: Literal["tenant", "catalog"]
    recipients: tuple[str, ...]
    catalogs: tuple[str, ...] = ()  # the catalogs a catalog audience administers


def tenant_config(settings: Settings, tenant: str) -> TenantConfig | None:
    """The tenant's configuration, or None when it is no longer configured (nobody to tell)."""
    return next((t for t in settings.tenant if t.name == tenant), None)


def catalog_admins(session: Session, tcfg: TenantConfig) -> dict[str, set[str]]:
    """Catalog admin address (as first spelled) → the catalogs they administer, from config and database."""
    by_key: dict[str, str] = {}
    cats: dict[str, set[str]] = defaultdict(set)

    def add(address: str, catalog_id: str) -> None:
        address = address.strip()
        if "@" not in address:
            return
        spelled = by_key.setdefault(address.casefold(), address)
        cats[spelled].add(catalog_id)

    for cid, addresses in tcfg.catalog_admins.items():
        for a in addresses:
            add(a, cid)
    for cat in session.exec(select(Catalog).where(Catalog.tenant == tcfg.name)):
        for a in cat.admins or []:
            if isinstance(a, str):
                add(a, cat.id)
    return dict(cats)


def audiences(session: Session, tcfg: TenantConfig, *, with_catalog_admins: bool) -> list[Audience]:
    """Tenant admins first, then one audience per distinct set of administered catalogs."""
    admins = tuple(unique_addresses(tcfg.admins))
    out = [Audience("tenant", admins)] if admins else []
    if not with_catalog_admins:
        return out
    taken = {a.casefold() for a in admins}
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for address, cids in catalog_admins(session, tcfg).items():
        if address.casefold() not in taken:
            groups[tuple(sorted(cids))].append(address)
    out += [Audience("catalog", tuple(sorted(rs, key=str.casefold)), cids) for cids, rs in sorted(groups.items())]
    return out


# --------------------------------------------------------------------------- marks


def mark_name(*parts: object) -> str:
    """A NotificationMark name (at most 64 characters: long ids are hashed)."""
    name = ":".join(str(p) for p in parts)
    return name if len(name) <= 64 else f"{name[:40]}#{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def get_mark(session: Session, tenant: str, name: str) -> str | None:
    row = session.get(NotificationMark, (tenant, name))
    return None if row is None else row.value


def set_mark(session: Session, tenant: str, name: str, value: str | None, now: datetime) -> None:
    """Remember (or, with None, forget) what was last announced."""
    row = session.get(NotificationMark, (tenant, name))
    if value is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        session.add(NotificationMark(tenant=tenant, name=name, value=value, updated_at=now))
    else:
        row.value, row.updated_at = value, now
