"""Subscription terms: what a signed key grants, and the command-line values that make them. Pure.

Dates: ``starts_at`` is the first instant of validity and ``ends_at`` is the **expiry instant**
(exclusive): the subscription is valid while ``starts_at <= now < ends_at``. A key issued with
``--ends 2026-12-31`` is valid through that whole UTC day, so ``ends_at`` is
``2027-01-01T00:00:00Z`` — the instant at which it expires and expiry grace starts, and the value
``status`` shows. A full ISO datetime given to ``--ends`` is taken as that expiry instant as is;
one without a time zone is refused rather than guessed.

Every ``Terms`` instance is valid: the constructor checks every field, so issuing and verifying
share one set of rules and no code path can carry half-valid terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from licsync.errors import InputError
from licsync.subscriptions.policies import policies

POLICIES = policies()  # the built-in policies; a registered seat model adds its own (seat_models.names)
OVERAGES = ("grace", "block", "tiered", "bill")
EXTRAS = ("reuse_limit", "tiers", "pools", "tenant_id", "authority")
DEFAULT_REUSE_LIMIT = 3
FIELDS = ("id", "customer", "seats", "starts_at", "ends_at", "policy", "overage", "grace_days",
          "issued_at", "extras")

_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")
_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EARLIEST, _LATEST = datetime(1970, 1, 1), datetime(9000, 1, 1)  # naive UTC bounds of every date in a key


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping, so ``Terms`` stays a true value (usable as a dict key)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = {k: _freeze(v) for k, v in (data or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items())))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value if isinstance(value, FrozenMap) else FrozenMap(value)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class Terms:
    """What a subscription grants. Every instance is valid: construction checks every field.

    ``ends_at`` is the expiry instant (exclusive), see the module docstring.
    """

    id: str
    customer: str
    seats: int
    starts_at: datetime
    ends_at: datetime
    issued_at: datetime
    policy: str = "enrollment"
    overage: str = "grace"
    grace_days: int = 14
    extras: Mapping[str, Any] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise InputError("invalid subscription terms: " + "; ".join(problems), problems)
        for name in ("starts_at", "ends_at", "issued_at"):
            object.__setattr__(self, name, getattr(self, name).astimezone(UTC))
        object.__setattr__(self, "extras", _freeze(dict(self.extras)))

    @property
    def expires_at(self) -> datetime:
        """The instant the subscription expires (same as ``ends_at``; named for readers)."""
        return self.ends_at

    @property
    def bound_tenant_id(self) -> str | None:
        """The Entra tenant id a key issued with ``--tenant-id`` is bound to (lower case), or None."""
        value = self.extras.get("tenant_id")
        return None if value is None else str(value)

    @property
    def required_authority(self) -> str | None:
        """The activation authority a key issued with ``--authority URL`` must be activated through."""
        value = self.extras.get("authority")
        return None if value is None else str(value)

    @property
    def reuse_limit(self) -> int:
        return int(self.extras.get("reuse_limit", DEFAULT_REUSE_LIMIT))

    def expired(self, now: datetime) -> bool:
        return now >= self.ends_at

    def started(self, now: datetime) -> bool:
        return now >= self.starts_at

    def to_payload(self) -> dict[str, Any]:
        """The JSON-ready form that is signed (datetimes as ``…Z`` strings)."""
        return {
            "id": self.id, "customer": self.customer, "seats": self.seats,
            "starts_at": _iso(self.starts_at), "ends_at": _iso(self.ends_at), "issued_at": _iso(self.issued_at),
            "policy": self.policy, "overage": self.overage, "grace_days": self.grace_days,
            "extras": _thaw(self.extras),
        }


def _in_range(value: datetime) -> bool:
    """Within the bounds in UTC, which keeps UTC conversion and date arithmetic from overflowing."""
    try:
        utc = value.replace(tzinfo=None) - value.utcoffset()  # type: ignore[operator]
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        return False
    return _EARLIEST <= utc < _LATEST


def _check(t: Terms) -> list[str]:
    """Every rule on terms in one place, so issuing and verifying can never disagree."""
    p: list[str] = []
    if not isinstance(t.id, str) or not _ID.match(t.id):
        p.append("id must be 1-128 printable characters without spaces")
    if not isinstance(t.customer, str) or len(t.customer) > 256 or _CONTROL.search(t.customer):
        p.append("customer must be text of at most 256 characters, without control characters")
    if not _is_int(t.seats) or not 0 <= t.seats <= 10_000_000:
        p.append(f"seats must be a whole number from 0 to 10,000,000 (got {t.seats!r})")
    dates_ok = True
    for name in ("starts_at", "ends_at", "issued_at"):
        value = getattr(t, name)
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            p.append(f"{name} must be a datetime with a time zone")
            dates_ok = False
        elif not _in_range(value):
            p.append(f"{name} must lie between {_EARLIEST.year} and {_LATEST.year}")
            dates_ok = False
    if dates_ok and t.ends_at <= t.starts_at:
        p.append(f"ends_at ({_iso(t.ends_at)}) must be after starts_at ({_iso(t.starts_at)})")
    if t.policy not in policies():
        p.append(f"policy must be one of {', '.join(policies())} (got {t.policy!r})")
    if t.overage not in OVERAGES:
        p.append(f"overage must be one of {', '.join(OVERAGES)} (got {t.overage!r})")
    if not _is_int(t.grace_days) or not 0 <= t.grace_days <= 365:
        p.append(f"grace_days must be a whole number from 0 to 365 (got {t.grace_days!r})")
    if not isinstance(t.extras, Mapping):
        return [*p, "extras must be an object"]
    for key, value in t.extras.items():
        if key == "reuse_limit":
            if not _is_int(value) or value < 0:
                p.append(f"extras.reuse_limit must be a whole number ≥ 0 (got {value!r})")
        elif key == "tiers":
            ok = isinstance(value, list | tuple) and value and all(_is_int(v) and v > 0 for v in value)
            if not ok or list(value) != sorted(set(value)):
                p.append(f"extras.tiers must be increasing seat counts > 0, e.g. 1000,2000 (got {value!r})")
        elif key == "pools":
            if not isinstance(value, Mapping) or not value:
                p.append("extras.pools must map pool names to seat counts, e.g. elearn=100")
                continue
            for name, seats in value.items():
                if not isinstance(name, str) or not _POOL.match(name):
                    p.append(f"extras.pools: {name!r} is not a pool name (letters, digits, _ . -)")
                if not _is_int(seats) or seats < 0:
                    p.append(f"extras.pools.{name} must be a whole number ≥ 0 (got {seats!r})")
        elif key == "authority":
            if not isinstance(value, str) or not value.startswith("https://") or len(value) > 512 or " " in value:
                p.append(f"extras.authority must be the https:// URL of the activation authority (got {value!r})")
        elif key == "tenant_id":
            if not isinstance(value, str) or not _GUID.match(value):
                p.append(f"extras.tenant_id must be an Entra tenant id, a lower-case GUID (got {value!r})")
        else:
            p.append(f"unknown extra {key!r} (this licsync knows {', '.join(EXTRAS)})")
    return p


# --------------------------------------------------------------------------- command-line values


def parse_starts(value: str) -> datetime:
    """``--starts``: a date means 00:00 UTC of that day; a datetime needs an explicit offset."""
    return _parse_instant(value, "--starts", end=False)


def parse_ends(value: str) -> datetime:
    """``--ends``: a date D means valid through D, i.e. the expiry instant D+1 00:00 UTC."""
    return _parse_instant(value, "--ends", end=True)


def _parse_instant(value: str, option: str, *, end: bool) -> datetime:
    value = value.strip()
    try:
        if _DATE_ONLY.match(value):
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime.combine(day, time(0), UTC)
        dt = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise InputError(f"{option}: {value!r} is not an ISO-8601 date or datetime "
                         "(use 2026-12-31 or 2026-12-31T18:00:00Z)") from None
    if dt.tzinfo is None:
        raise InputError(f"{option}: {value!r} has no time zone; add Z or an offset like +02:00")
    return dt.astimezone(UTC)


def parse_tiers(value: str) -> list[int]:
    """``--tiers 1000,2000,5000`` → ``[1000, 2000, 5000]`` (checked again by ``Terms``)."""
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--tiers: {value!r} must be seat counts separated by commas, e.g. 1000,2000") from None


def parse_pools(value: str) -> dict[str, int]:
    """``--pools elearn=100,weclimb=50`` → ``{"elearn": 100, "weclimb": 50}``."""
    pools: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",")):
        name, sep, seats = part.partition("=")
        if not part:
            continue
        if not sep or not seats.strip().isdigit() or name.strip() in pools:
            raise InputError(f"--pools: {part!r} must be name=seats, each name once, e.g. elearn=100")
        pools[name.strip()] = int(seats)
    return pools
