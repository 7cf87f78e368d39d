"""The ``role`` counting model — eLearn / weCLIMB (SPEC §1, seed 002). Pure.

* Seats are per **product pool**; the pools and their sizes travel in the signed key
  (``--pools elearn=100,weclimb=50,combined=20``). Which roles need which pools is configuration
  (``[roles]``: ``observer = ["weclimb"]``). A pool is an ordinary name: ``combined`` is the pool
  of the roles the ``[roles]`` table maps to it (e.g. ``leader = ["combined"]``); licsync does not
  turn an elearn role plus a weclimb role into a combined seat on its own.
* A user holds one seat of a pool while at least one of their roles needs it. Giving a role takes
  the seats of the pools it needs that the user does not hold yet; removing a role returns the
  seats no remaining role needs. A role that needs no pool is recorded and takes nothing.
* A role is given whole or not at all: if a pool it needs is full (``pool_full``) or not in the
  subscription (``pool_not_licensed``), the assignment is refused with that reason and nothing is
  taken. A pool is never over-allocated: the database adapter decides under a lock on the pool
  rows, so two assignments racing for the last seat get one seat and one refusal.
* In a batch (an import) removals come first, so a seat returned by the batch can be taken by it;
  additions are decided in file order.
* Inactive assignment: a pool seat whose user has not signed in for ``inactive_days`` (from Graph
  ``signInActivity``); a user who never signed in counts from the assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from licsync.seat_models.csvfile import check_len, parse_all, require
from licsync.seat_models.reasons import ModelReason

HEADER = ("user_id", "role")
REPORT_COLUMNS = ("pool", "total", "assigned", "available", "usage_pct")
DEFAULT_INACTIVE_DAYS = 90


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    total: int
    assigned: int = 0

    @property
    def available(self) -> int:
        return self.total - self.assigned

    @property
    def usage_pct(self) -> float | None:
        return None if self.total <= 0 else round(100.0 * self.assigned / self.total, 1)

    def as_dict(self) -> dict[str, object]:
        return {"pool": self.name, "total": self.total, "assigned": self.assigned, "available": self.available,
                "usage_pct": self.usage_pct}


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one role change."""

    user_id: str
    role: str
    action: str  # add | remove
    granted: bool = True
    takes: tuple[str, ...] = ()  # pools whose seat the user takes
    returns: tuple[str, ...] = ()  # pools whose seat the user gives back
    reason: str | None = None  # refusal: pool_full | pool_not_licensed
    pool: str | None = None  # the pool that refused

    @property
    def sentence(self) -> str:
        if not self.granted:
            what = "is full" if self.reason == ModelReason.POOL_FULL else "is not in the subscription"
            return f"role {self.role} of {self.user_id} refused: pool {self.pool} {what}"
        if self.action == "remove":
            back = f", returns {', '.join(self.returns)}" if self.returns else ""
            return f"role {self.role} removed from {self.user_id}{back}"
        took = f", takes {', '.join(self.takes)}" if self.takes else ""
        return f"role {self.role} given to {self.user_id}{took}"


@dataclass(frozen=True, slots=True)
class RolePlan:
    decisions: tuple[Decision, ...] = ()
    pools: tuple[Pool, ...] = ()  # after the plan

    @property
    def refused(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if not d.granted)

    @property
    def granted(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.granted)


def needs(roles: Iterable[str], mapping: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """The pools a set of roles needs."""
    return frozenset(p for r in roles for p in mapping.get(r, ()))


@dataclass
class _Book:
    """The running state of a batch: roles and pool seats per user, counts per pool."""

    roles: dict[str, set[str]]
    seats: dict[str, set[str]]
    pools: dict[str, Pool]
    decisions: list[Decision] = field(default_factory=list)


def plan(
    roles: Mapping[str, Iterable[str]],
    seats: Mapping[str, Iterable[str]],
    pools: Iterable[Pool],
    mapping: Mapping[str, Iterable[str]],
    *,
    add: Iterable[tuple[str, str]] = (),
    remove: Iterable[tuple[str, str]] = (),
) -> RolePlan:
    """Decide a batch. ``roles``/``seats``: each user's current roles and pool seats (those touched).

    ``pools`` carry the current ``assigned`` counts (read under the pool lock). Removals of roles a
    user does not have, and additions of roles a user already has, change nothing and are omitted.
    """
    book = _Book({u: set(r) for u, r in roles.items()}, {u: set(p) for u, p in seats.items()},
                 {p.name: p for p in pools})
    for user, role in remove:
        _remove(book, user, role, mapping)
    for user, role in add:
        _add(book, user, role, mapping)
    return RolePlan(tuple(book.decisions), tuple(sorted(book.pools.values(), key=lambda p: p.name)))


def _remove(book: _Book, user: str, role: str, mapping: Mapping[str, Iterable[str]]) -> None:
    mine = book.roles.setdefault(user, set())
    if role not in mine:
        return
    mine.discard(role)
    held = book.seats.setdefault(user, set())
    back = tuple(sorted(held - needs(mine, mapping)))
    for p in back:
        held.discard(p)
        if p in book.pools:
            old = book.pools[p]
            book.pools[p] = Pool(p, old.total, old.assigned - 1)
    book.decisions.append(Decision(user, role, "remove", returns=back))


def _add(book: _Book, user: str, role: str, mapping: Mapping[str, Iterable[str]]) -> None:
    mine = book.roles.setdefault(user, set())
    if role in mine:
        return
    held = book.seats.setdefault(user, set())
    missing = sorted(set(mapping.get(role, ())) - held)
    for p in missing:
        pool = book.pools.get(p)
        if pool is None:
            book.decisions.append(Decision(user, role, "add", False, reason=ModelReason.POOL_NOT_LICENSED, pool=p))
            return
        if pool.assigned >= pool.total:
            book.decisions.append(Decision(user, role, "add", False, reason=ModelReason.POOL_FULL, pool=p))
            return
    for p in missing:
        old = book.pools[p]
        book.pools[p] = Pool(p, old.total, old.assigned + 1)
        held.add(p)
    mine.add(role)
    book.decisions.append(Decision(user, role, "add", takes=tuple(missing)))


def inactive(
    seats: Iterable[tuple[str, str, datetime]],
    last_sign_in: Mapping[str, datetime | None],
    now: datetime,
    days: int,
) -> list[tuple[str, str, datetime | None]]:
    """``(user, pool, last sign-in)`` of the seats ``(user, pool, assigned_at)`` with no sign-in for ``days``."""
    limit = now - timedelta(days=days)
    out = []
    for user, pool, assigned_at in seats:
        seen = last_sign_in.get(user)
        if (seen or assigned_at) < limit:
            out.append((user, pool, seen))
    return sorted(out)


def parse_roles(data: bytes) -> list[tuple[str, str]]:
    """Validate a whole roles file (``user_id,role``); its ``(user, role)`` pairs in file order, once each."""
    seen: set[tuple[str, str]] = set()

    def parse(_line: int, c: dict[str, str], why: list[str]) -> tuple[str, str] | None:
        require(c, HEADER, why)
        check_len(c, {"user_id": 64, "role": 64}, why)
        pair = (c["user_id"], c["role"].lower())
        if why or pair in seen:
            return None
        seen.add(pair)
        return pair

    return parse_all(data, HEADER, parse)
