"""Organisations with parents and children, and the user license report (LXP, seed 001). Pure.

``licsync import orgs`` — header ``org_id,org_name,parent_id,user_limit,catalog_id``. One row per
organisation and catalog: an organisation with several catalogs has several rows (the same name,
parent and limit on each), one without a catalog has one row with ``catalog_id`` empty. A catalog
belongs to at most one organisation. ``parent_id`` names another organisation of the file (or is
empty for a top-level one); cycles are refused. The file is the whole tree of the tenant.

The report, per organisation, in tree order (parents before their children):

* **Used** — the seat holders who have a live enrollment in a catalog of the organisation *or of any
  organisation below it*, each counted once (a user in two child organisations counts once in the
  parent);
* **User Limit** — the organisation's own ``user_limit``; left empty, the sum of its children's;
* **Remaining** = User Limit − Used (negative when over); **Percentage Used** = Used / User Limit,
  one decimal (empty when the limit is 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from licsync.csvfiles import show
from licsync.errors import InputError
from licsync.seat_models.csvfile import check_len, parse_all, require

HEADER = ("org_id", "org_name", "parent_id", "user_limit", "catalog_id")
REPORT_COLUMNS = ("name", "user_limit", "used", "remaining", "percentage_used")
_LIMITS = {"org_id": 128, "org_name": 512, "parent_id": 128, "catalog_id": 128}


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    parent_id: str | None = None
    user_limit: int | None = None
    catalogs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OrgRow:
    org_id: str
    name: str
    parent_id: str | None
    depth: int
    user_limit: int
    used: int
    children: tuple[str, ...] = ()

    @property
    def remaining(self) -> int:
        return self.user_limit - self.used

    @property
    def percentage_used(self) -> float | None:
        return None if self.user_limit <= 0 else round(100.0 * self.used / self.user_limit, 1)

    def as_dict(self) -> dict[str, object]:
        return {"org_id": self.org_id, "name": self.name, "parent_id": self.parent_id, "depth": self.depth,
                "user_limit": self.user_limit, "used": self.used, "remaining": self.remaining,
                "percentage_used": self.percentage_used}


def parse_orgs(data: bytes) -> list[Org]:
    """Validate a whole orgs file; the organisations it describes, or InputError naming each line."""
    seen: dict[str, tuple[str, str, str, int]] = {}
    catalogs: dict[str, list[str]] = {}
    owner: dict[str, tuple[str, int]] = {}

    def parse(line: int, c: dict[str, str], why: list[str]) -> None:
        require(c, ("org_id", "org_name"), why)
        check_len(c, _LIMITS, why)
        limit = c["user_limit"]
        if limit and not (limit.isdigit() and len(limit) <= 9):
            why.append(f"user_limit {show(limit)} is not a whole number ≥ 0")
        if c["parent_id"] and c["parent_id"] == c["org_id"]:
            why.append("an organisation cannot be its own parent")
        if why:
            return
        org, first = c["org_id"], seen.setdefault(c["org_id"], (c["org_name"], c["parent_id"], limit, line))
        for i, what in ((0, "org_name"), (1, "parent_id"), (2, "user_limit")):
            if first[i] != (c["org_name"], c["parent_id"], limit)[i]:
                why.append(f"org {show(org)} has {what} {show((c['org_name'], c['parent_id'], limit)[i])} here "
                           f"but {show(first[i])} on line {first[3]}")
        cat = c["catalog_id"]
        if cat:
            prev = owner.setdefault(cat, (org, line))
            if prev[0] != org:
                why.append(f"catalog {show(cat)} already belongs to org {show(prev[0])} (line {prev[1]})")
            elif prev[1] == line:
                catalogs.setdefault(org, []).append(cat)

    parse_all(data, HEADER, parse)
    orgs = [Org(oid, v[0], v[1] or None, int(v[2]) if v[2] else None, tuple(sorted(catalogs.get(oid, []))))
            for oid, v in seen.items()]
    problems = [f"line {seen[o.id][3]}: parent_id {show(o.parent_id)} is not an org_id of the file"
                for o in orgs if o.parent_id is not None and o.parent_id not in seen]
    problems += [f"line {seen[c[0]][3]}: the parents of org {show(c[0])} form a cycle ({' → '.join(c)})"
                 for c in cycles(orgs)]
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the file; nothing was imported", problems)
    return orgs


def cycles(orgs: Iterable[Org]) -> list[list[str]]:
    """Each parent cycle once, as the path from its smallest org id back to it."""
    parent = {o.id: o.parent_id for o in orgs}
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(parent):
        path: list[str] = []
        node: str | None = start
        while node is not None and node in parent and node not in path:
            path.append(node)
            node = parent[node]
        if node is not None and node in path:
            loop = path[path.index(node) :]
            first = loop.index(min(loop))
            loop = loop[first:] + loop[:first]
            found.setdefault(frozenset(loop), [*loop, loop[0]])
    return list(found.values())


def rollup(orgs: Iterable[Org], holders_by_catalog: Mapping[str, Iterable[str]]) -> list[OrgRow]:
    """The report rows, parents first, siblings by name then id."""
    by_id = {o.id: o for o in orgs}
    kids: dict[str | None, list[Org]] = {}
    for o in by_id.values():
        kids.setdefault(o.parent_id if o.parent_id in by_id else None, []).append(o)
    for group in kids.values():
        group.sort(key=lambda o: (o.name.casefold(), o.id))
    out: list[OrgRow] = []

    def walk(o: Org, depth: int) -> tuple[set[str], int]:
        index = len(out)
        out.append(OrgRow(o.id, o.name, o.parent_id, depth, 0, 0))
        users: set[str] = set()
        for cat in o.catalogs:
            users.update(holders_by_catalog.get(cat, ()))
        child_limits = 0
        for child in kids.get(o.id, []):
            child_users, child_limit = walk(child, depth + 1)
            users |= child_users
            child_limits += child_limit
        limit = o.user_limit if o.user_limit is not None else child_limits
        out[index] = OrgRow(o.id, o.name, o.parent_id, depth, limit, len(users),
                            tuple(c.id for c in kids.get(o.id, [])))
        return users, limit

    for top in kids.get(None, []):
        walk(top, 0)
    return out
