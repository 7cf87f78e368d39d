"""The ``first_access`` counting model — Emtrain (SPEC §1, seed 000). Pure.

* A learner is an **activity id** (the SCORM id the LMS sends). The first time an activity id
  interacts with any content inside the license period (``starts_at <= occurred_at < ends_at`` of
  the subscription), it consumes a seat. That consumption is never freed or handed to anyone else
  within the period, and any further content is free. A launch that arrives late but happened
  earlier than the recorded first access corrects *which* content was first — it is the same
  consumption, not a new one. Launches outside the period consume nothing.
* Available = purchased − consumed, and may go negative: that shortfall is the overage (billed).
* One person may appear under several activity ids (an LMS migration or reconfiguration). licsync
  lists **candidate duplicates** — two consumed activity ids with the same first and last name, the
  same email, or the same directory user — for an admin to confirm or dismiss. Nothing is merged:
  a confirmed duplicate still counts as consumed, is reported as a duplicate of its primary (the
  earliest first access of its group), and billing shows it separately: ``billable = consumed −
  confirmed duplicates``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from licsync.csvfiles import show
from licsync.errors import InputError
from licsync.seat_models.csvfile import check_len, instant, parse_all, require
from licsync.seats import SeatFigures

HEADER = ("activity_id", "user_id", "first_name", "last_name", "email", "content_id", "content_title", "occurred_at")
REPORT_COLUMNS = ("activity_id", "user_id", "first_name", "last_name", "first_content", "first_access_at")
LIMITS = {"activity_id": 128, "user_id": 64, "first_name": 256, "last_name": 256, "email": 320, "content_id": 512,
          "content_title": 512}
VERBS = ("launched", "experienced")  # xAPI verbs that count as an interaction
MAX_FUTURE = timedelta(minutes=5)  # clock skew accepted for a launch "in the future"


@dataclass(frozen=True, slots=True)
class Launch:
    """One interaction of a learner with a piece of content."""

    activity_id: str
    content_id: str
    occurred_at: datetime
    user_id: str = ""
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    content_title: str = ""
    source: str = "csv"  # csv | xapi


@dataclass(frozen=True, slots=True)
class FirstAccess:
    """The consumption of one activity id in one license period."""

    activity_id: str
    content_id: str
    content_title: str
    first_access_at: datetime
    user_id: str = ""


@dataclass(frozen=True, slots=True)
class Consumption:
    new: tuple[FirstAccess, ...]  # activity ids that consume a seat now
    corrected: tuple[FirstAccess, ...]  # already consumed; an earlier first access arrived
    outside_period: int  # launches before the period started or after it ended


def consume(
    existing: Mapping[str, FirstAccess], launches: Iterable[Launch], starts_at: datetime, ends_at: datetime
) -> Consumption:
    """Apply launches to the period's consumption (``existing``, by activity id)."""
    first: dict[str, Launch] = {}
    outside = 0
    for la in launches:
        if not starts_at <= la.occurred_at < ends_at:
            outside += 1
            continue
        prev = first.get(la.activity_id)
        if prev is None or (la.occurred_at, la.content_id) < (prev.occurred_at, prev.content_id):
            first[la.activity_id] = la
    new: list[FirstAccess] = []
    corrected: list[FirstAccess] = []
    for aid in sorted(first):
        la = first[aid]
        fa = FirstAccess(aid, la.content_id, la.content_title or la.content_id, la.occurred_at, la.user_id)
        old = existing.get(aid)
        if old is None:
            new.append(fa)
        elif (fa.first_access_at, fa.content_id) < (old.first_access_at, old.content_id):
            corrected.append(FirstAccess(aid, fa.content_id, fa.content_title, fa.first_access_at,
                                         old.user_id or fa.user_id))
    return Consumption(tuple(new), tuple(corrected), outside)


@dataclass(frozen=True, slots=True)
class Figures(SeatFigures):
    """The seat pool, and the billing of seed 000: confirmed duplicates are not billed."""

    confirmed_duplicates: int = 0

    @property
    def billable(self) -> int:
        return self.consumed - self.confirmed_duplicates

    @property
    def billable_overage(self) -> int:
        return max(0, self.billable - self.purchased)

    def as_dict(self) -> dict[str, int]:
        return {"purchased": self.purchased, "consumed": self.consumed, "available": self.available,
                "overage": self.overage, "confirmed_duplicates": self.confirmed_duplicates,
                "billable": self.billable, "billable_overage": self.billable_overage}


# --------------------------------------------------------------------------- duplicates


@dataclass(frozen=True, slots=True)
class Identity:
    """What is known about the learner behind one activity id."""

    activity_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    directory_user: str = ""  # the directory account it resolves to (by user id or email), if any
    first_access_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    activity_a: str  # a < b
    activity_b: str
    matched_on: tuple[str, ...]  # name | email | directory_user


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def candidate_id(tenant: str, a: str, b: str) -> str:
    """Stable: the same pair always gets the same id, so re-detection changes nothing."""
    return "dup-" + hashlib.sha256(f"{tenant}\x00{a}\x00{b}".encode()).hexdigest()[:10]


def candidates(tenant: str, identities: Iterable[Identity]) -> list[Candidate]:
    """Every pair of activity ids that share a name, an email or a directory user."""
    groups: dict[tuple[str, str], list[str]] = {}
    for i in identities:
        keys = []
        if _norm(i.first_name) and _norm(i.last_name):
            keys.append(("name", _norm(i.first_name) + "\x00" + _norm(i.last_name)))
        if _norm(i.email):
            keys.append(("email", _norm(i.email)))
        if i.directory_user:
            keys.append(("directory_user", i.directory_user))
        for k in keys:
            groups.setdefault(k, []).append(i.activity_id)
    pairs: dict[tuple[str, str], set[str]] = {}
    for (kind, _value), ids in groups.items():
        ids = sorted(set(ids))
        for n, a in enumerate(ids):
            for b in ids[n + 1 :]:
                pairs.setdefault((a, b), set()).add(kind)
    order = ("name", "email", "directory_user")
    return [Candidate(candidate_id(tenant, a, b), a, b, tuple(k for k in order if k in kinds))
            for (a, b), kinds in sorted(pairs.items())]


def duplicate_of(confirmed: Iterable[tuple[str, str]], first_access: Mapping[str, datetime]) -> dict[str, str]:
    """``{duplicate activity id: primary}`` for consumed ids joined by confirmed pairs.

    Confirmed pairs join groups (a = b, b = c: one person). The primary of a group is its earliest
    first access (then the smallest id); every other member is a duplicate of it.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in confirmed:
        if a in first_access and b in first_access:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, list[str]] = {}
    for x in list(parent):
        members.setdefault(find(x), []).append(x)
    out: dict[str, str] = {}
    for group in members.values():
        if len(group) < 2:
            continue
        primary = min(group, key=lambda x: (first_access[x], x))
        out.update({x: primary for x in group if x != primary})
    return out


# --------------------------------------------------------------------------- input


def _launch_problems(la: Launch, now: datetime) -> list[str]:
    why = []
    if la.occurred_at > now + MAX_FUTURE:
        why.append(f"occurred_at {la.occurred_at.isoformat()} is in the future")
    return why


def parse_activity(data: bytes, now: datetime) -> list[Launch]:
    """Validate a whole activity CSV (header ``HEADER``); its launches, or InputError naming each line."""

    def parse(_line: int, c: dict[str, str], why: list[str]) -> Launch | None:
        require(c, ("activity_id", "content_id", "occurred_at"), why)
        check_len(c, LIMITS, why)
        at = None
        if c["occurred_at"]:
            try:
                at = instant(c["occurred_at"])
            except ValueError:
                why.append(f"occurred_at {show(c['occurred_at'])} is not an ISO-8601 date or date-time")
        if why or at is None:
            return None
        la = Launch(c["activity_id"], c["content_id"], at, c["user_id"], c["first_name"], c["last_name"],
                    c["email"], c["content_title"], "csv")
        why.extend(_launch_problems(la, now))
        return la

    return parse_all(data, HEADER, parse)


def _lang_map(value: Any) -> str:
    if isinstance(value, Mapping) and value:
        for lang in ("en-US", "en", "und"):
            if isinstance(value.get(lang), str):
                return value[lang]
        first = next(iter(value.values()))
        return first if isinstance(first, str) else ""
    return value if isinstance(value, str) else ""


def verb_of(statement: Mapping[str, Any]) -> str:
    verb = statement.get("verb")
    if not isinstance(verb, Mapping):
        return ""
    vid = verb.get("id") if isinstance(verb.get("id"), str) else ""
    return vid.rstrip("/").rsplit("/", 1)[-1].lower() if vid else _lang_map(verb.get("display")).lower()


def parse_statement(s: Any, now: datetime) -> tuple[Launch | None, list[str]]:
    """One xAPI-style statement: a launch (verb launched/experienced), None (another verb), or problems.

    Mapping: ``actor.account.name`` is the activity id; ``actor.name`` ("First Last", split at the
    last space) the names; ``actor.mbox`` (``mailto:``) the email; ``object.id`` the content and
    ``object.definition.name`` its title; ``timestamp`` when it happened; a ``context.extensions``
    key ending in ``user_id`` the user id.
    """
    if not isinstance(s, Mapping):
        return None, ["is not a JSON object"]
    if verb_of(s) not in VERBS:
        return None, [] if isinstance(s.get("verb"), Mapping) else ["verb is missing"]
    why: list[str] = []
    actor = s.get("actor") if isinstance(s.get("actor"), Mapping) else {}
    account = actor.get("account") if isinstance(actor.get("account"), Mapping) else {}
    aid = account.get("name") if isinstance(account.get("name"), str) else ""
    if not aid.strip():
        why.append("actor.account.name (the learner's activity id) is missing")
    name = actor.get("name") if isinstance(actor.get("name"), str) else ""
    first, _, last = name.strip().rpartition(" ")
    if not first:
        first, last = last, ""
    mbox = actor.get("mbox") if isinstance(actor.get("mbox"), str) else ""
    obj = s.get("object") if isinstance(s.get("object"), Mapping) else {}
    content = obj.get("id") if isinstance(obj.get("id"), str) else ""
    if not content.strip():
        why.append("object.id (the content) is missing")
    definition = obj.get("definition") if isinstance(obj.get("definition"), Mapping) else {}
    title = _lang_map(definition.get("name"))
    stamp = s.get("timestamp")
    at = None
    with contextlib.suppress(ValueError):
        at = instant(stamp) if isinstance(stamp, str) else None
    if at is None:
        why.append(f"timestamp {show(str(stamp))} is not an ISO-8601 date-time")
    context = s.get("context") if isinstance(s.get("context"), Mapping) else {}
    ext = context.get("extensions") if isinstance(context.get("extensions"), Mapping) else {}
    user = next((str(v) for k, v in ext.items() if str(k).rstrip("/").endswith("user_id")), "")
    cells = {"activity_id": aid.strip(), "user_id": user.strip(), "first_name": first.strip(),
             "last_name": last.strip(), "email": mbox.removeprefix("mailto:").strip(), "content_id": content.strip(),
             "content_title": title.strip()}
    check_len(cells, LIMITS, why)
    if why or at is None:
        return None, why
    la = Launch(cells["activity_id"], cells["content_id"], at, cells["user_id"], cells["first_name"],
                cells["last_name"], cells["email"], cells["content_title"], "xapi")
    return la, _launch_problems(la, now)


def parse_statements(statements: Sequence[Any], now: datetime) -> tuple[list[Launch], int]:
    """Validate a batch whole: its launches and the number of statements with other verbs (ignored)."""
    if not isinstance(statements, Sequence) or isinstance(statements, str | bytes):
        raise InputError("statements must be a JSON array of xAPI statements")
    launches: list[Launch] = []
    ignored = 0
    problems: list[str] = []
    for n, s in enumerate(statements):
        la, why = parse_statement(s, now)
        if why:
            problems.append(f"statement {n}: {'; '.join(why)}")
        elif la is None:
            ignored += 1
        else:
            launches.append(la)
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the statements; nothing was stored", problems)
    return launches, ignored
