"""The emulated tenant directory: users, soft/hard deletes, and a change log that delta reads.

Every change appends one entry to the log, so "the version" is the log length and "changes
since watermark W" is ``log[W:]``. User records are replaced on every change, never mutated,
so a snapshot is just a list of references: an initial delta round sees the directory as it
was at its first request, however long the round takes.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from licsync.graph.parse import USER_SELECT

PROPS: tuple[str, ...] = tuple(USER_SELECT.split(","))
# What Graph returns without $select (the documented default set, minus phone/office fields):
# notably NOT accountEnabled, which is why licsync must always $select it.
DEFAULT_SELECT: tuple[str, ...] = ("id", "displayName", "givenName", "mail", "surname", "userPrincipalName")
SOFT_DELETE_RETENTION = timedelta(days=30)

# fmt: off
_FIRST = ("Ada", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam", "Mia",
          "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Xavi", "Yara", "Zoe")
_LAST = ("Adams", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski",
         "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist", "Rossi", "Schmidt", "Tanaka", "Ulrich", "Varga",
         "Weber", "Xu", "Yilmaz", "Zhang")
# fmt: on


@dataclass(frozen=True, slots=True)
class Removed:
    """A removal as delta reports it: ``reason`` is "changed" (soft delete) or "deleted"."""

    id: str
    reason: str


Entry = dict[str, Any] | Removed  # one item of a delta round: a user record or a removal


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Directory:
    """Thread-safe users of one emulated tenant.

    ``clock`` is replaced by the emulator with its own (advanceable) clock; it stamps soft
    deletes and decides when they expire after 30 days.
    """

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._active: dict[str, dict[str, Any]] = {}
        self._soft: dict[str, tuple[dict[str, Any], datetime]] = {}
        self._hard: set[str] = set()
        self._sign_in: dict[str, datetime] = {}  # last successful interactive sign-in
        self._sign_in_more: dict[str, tuple[datetime | None, datetime | None]] = {}  # (non-interactive, failed)
        self._lagged: dict[int, datetime] = {}  # log index -> when delta may report it (replica lag)
        self._log_ids: list[str] = []
        self._log_props: list[frozenset[str] | None] = []  # None: created, deleted or restored
        self._serial = 0
        self._rng = random.Random(0x11C5)
        self._prerendered: tuple[int, tuple[str, ...], int, dict[int, bytes]] | None = None

    # -- reading ---------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return len(self._log_ids)

    def __len__(self) -> int:
        return len(self._active)

    def get(self, uid: str) -> dict[str, Any] | None:
        with self._lock:
            return self._active.get(uid)

    def find(self, id_or_upn: str) -> dict[str, Any] | None:
        """An active user by id or (case-insensitive) userPrincipalName, as Graph resolves ``/users/{x}``."""
        with self._lock:
            user = self._active.get(id_or_upn)
            if user is not None:
                return user
            wanted = id_or_upn.lower()
            return next(
                (u for u in self._active.values() if (u.get("userPrincipalName") or "").lower() == wanted), None
            )

    def state(self, uid: str) -> str:
        """One of "active", "soft" (restorable), "hard" (deleted for good) or "unknown"."""
        with self._lock:
            if uid in self._active:
                return "active"
            if uid in self._soft:
                return "soft"
            return "hard" if uid in self._hard else "unknown"

    def active_users(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._active.values())

    def soft_deleted(self) -> list[tuple[dict[str, Any], datetime]]:
        with self._lock:
            self._purge_expired()
            return list(self._soft.values())

    def sign_in(self, uid: str) -> datetime | None:
        return self._sign_in.get(uid)

    def sign_in_activity(self, uid: str) -> dict[str, str | None] | None:
        """The ``signInActivity`` resource: ``lastSignInDateTime`` counts interactive attempts, failed
        ones included; ``lastSuccessfulSignInDateTime`` and ``lastNonInteractiveSignInDateTime`` do not."""
        ok = self._sign_in.get(uid)
        non_interactive, failed = self._sign_in_more.get(uid, (ok, None))
        if ok is None and non_interactive is None and failed is None:
            return None
        interactive = max((w for w in (ok, failed) if w is not None), default=None)
        return {
            "lastSignInDateTime": iso(interactive) if interactive else None,
            "lastSuccessfulSignInDateTime": iso(ok) if ok else None,
            "lastNonInteractiveSignInDateTime": iso(non_interactive) if non_interactive else None,
        }

    def snapshot(self, *, include_removed: bool = False) -> tuple[int, list[Entry]]:
        """Version and entries of an initial round: every active user (enabled or not)."""
        with self._lock:
            self._purge_expired()
            entries: list[Entry] = list(self._active.values())
            if include_removed:
                entries.extend(Removed(uid, "changed") for uid in self._soft)
            return self.version, entries

    def changes_since(self, watermark: int, select: Iterable[str]) -> tuple[int, list[Entry]]:
        """Each user changed after ``watermark`` once, in its latest state.

        A change to a property outside ``select`` is not tracked, as in Graph.
        """
        tracked = frozenset(select)
        with self._lock:
            self._purge_expired()
            version = self.version
            now = self.clock()
            # A change a lagging replica does not know yet ends the round before it (reported later).
            version = min([i for i, at in self._lagged.items() if i >= watermark and at > now] + [version])
            changed: dict[str, None] = {}
            for uid, props in zip(self._log_ids[watermark:version], self._log_props[watermark:version], strict=True):
                if props is None or not props.isdisjoint(tracked):
                    changed[uid] = None
            entries: list[Entry] = []
            for uid in changed:
                user = self._active.get(uid)
                if user is not None:
                    entries.append(user)
                else:
                    entries.append(Removed(uid, "changed" if uid in self._soft else "deleted"))
            return version, entries

    # -- writing ---------------------------------------------------------------------------

    def _log(self, uid: str, props: frozenset[str] | None) -> None:
        self._log_ids.append(uid)
        self._log_props.append(props)
        self._prerendered = None

    def _new_id(self) -> str:
        h = f"{self._rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def add_user(self, **props: Any) -> str:
        """Create a user; unspecified properties get plausible defaults. Returns its id."""
        with self._lock:
            self._serial += 1
            uid = props.pop("id", None) or self._new_id()
            if uid in self._active or uid in self._soft:
                raise ValueError(f"user {uid} already exists")
            n = self._serial
            user: dict[str, Any] = {
                "id": uid,
                "userPrincipalName": f"user{n}@contoso.example",
                "mail": f"user{n}@contoso.example",
                "displayName": f"User {n}",
                "givenName": "User",
                "surname": str(n),
                "accountEnabled": True,
                "userType": "Member",
                "employeeId": None,
            }
            user.update(props)
            self._active[uid] = user
            self._hard.discard(uid)
            self._log(uid, None)
            return uid

    def add_users(
        self,
        n: int,
        seed: int = 0,
        *,
        disabled_fraction: float = 0.0,
        guest_fraction: float = 0.0,
        signed_in_fraction: float = 0.9,
        domain: str = "contoso.example",
    ) -> list[str]:
        """Add ``n`` deterministic synthetic users (same seed, same users) in one locked pass.

        Plain enabled members by default; ask for realism with ``disabled_fraction`` (a share of
        accounts with accountEnabled false) and ``guest_fraction`` (userType Guest, #EXT# UPNs).
        """
        rng = random.Random(seed)
        now = self.clock()
        ids: list[str] = []
        with self._lock:
            base = self._serial
            self._serial += n
            for i in range(base + 1, base + n + 1):
                h = f"{rng.getrandbits(128):032x}"
                uid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
                first = _FIRST[i % 26]
                last = _LAST[(i // 26) % 26]
                guest = rng.random() < guest_fraction
                local = f"{first.lower()}.{last.lower()}{i}"
                self._active[uid] = {
                    "id": uid,
                    "userPrincipalName": f"{local}_ext#EXT#@{domain}" if guest else f"{local}@{domain}",
                    "mail": f"{local}@partner.example" if guest else f"{local}@{domain}",
                    "displayName": f"{first} {last}",
                    "givenName": first,
                    "surname": last,
                    "accountEnabled": rng.random() >= disabled_fraction,
                    "userType": "Guest" if guest else "Member",
                    "employeeId": None if guest else f"E{i:07d}",
                }
                if rng.random() < signed_in_fraction:
                    self._sign_in[uid] = now - timedelta(minutes=rng.randrange(60 * 24 * 180))
                self._log_ids.append(uid)
                self._log_props.append(None)
                ids.append(uid)
            self._prerendered = None
        return ids

    def update_user(self, uid: str, **props: Any) -> None:
        if "id" in props:
            raise ValueError("a user's id cannot change")
        with self._lock:
            old = self._require_active(uid)
            self._active[uid] = {**old, **props}  # replace, never mutate: snapshots hold the old dict
            self._log(uid, frozenset(props))

    def disable(self, uid: str) -> None:
        self.update_user(uid, accountEnabled=False)

    def enable(self, uid: str) -> None:
        self.update_user(uid, accountEnabled=True)

    def soft_delete(self, uid: str) -> None:
        with self._lock:
            user = self._require_active(uid)
            del self._active[uid]
            self._soft[uid] = (user, self.clock())
            self._log(uid, None)

    def restore(self, uid: str, lag_seconds: float = 0) -> None:
        """Restore a soft-deleted user. With ``lag_seconds`` (emulator clock), the user leaves
        deletedItems and is readable by id at once, but delta reports the restore only that much later."""
        with self._lock:
            self._purge_expired()
            if uid not in self._soft:
                raise KeyError(f"no soft-deleted user {uid}")
            self._active[uid] = self._soft.pop(uid)[0]
            if lag_seconds > 0:
                self._lagged[len(self._log_ids)] = self.clock() + timedelta(seconds=lag_seconds)
            self._log(uid, None)

    def hard_delete(self, uid: str) -> None:
        """Delete for good, from the active users or from the soft-deleted ones."""
        with self._lock:
            if self._active.pop(uid, None) is None and self._soft.pop(uid, None) is None:
                raise KeyError(f"no user {uid}")
            self._hard.add(uid)
            self._sign_in.pop(uid, None)
            self._log(uid, None)

    def set_sign_in(
        self,
        uid: str,
        when: datetime | None,
        non_interactive: datetime | None = None,
        failed: datetime | None = None,
    ) -> None:
        """Record sign-ins; not a directory change, so delta never reports them (as in Graph).

        ``when`` is the last successful interactive sign-in; ``non_interactive`` (SSO, token
        refresh) defaults to it; ``failed`` is a later failed interactive attempt.
        """
        with self._lock:
            self._require_active(uid)
            if when is None:
                self._sign_in.pop(uid, None)
            else:
                self._sign_in[uid] = when
            if non_interactive is None and failed is None:
                self._sign_in_more.pop(uid, None)
            else:
                self._sign_in_more[uid] = (non_interactive, failed)

    def _require_active(self, uid: str) -> dict[str, Any]:
        user = self._active.get(uid)
        if user is None:
            raise KeyError(f"no active user {uid}")
        return user

    def _purge_expired(self) -> None:
        """Soft-deleted users older than 30 days are deleted for good, as Entra ID does."""
        if not self._soft:
            return
        cutoff = self.clock() - SOFT_DELETE_RETENTION
        for uid in [uid for uid, (_u, at) in self._soft.items() if at <= cutoff]:
            del self._soft[uid]
            self._hard.add(uid)
            self._log(uid, None)

    # -- pre-rendering for benchmarks ------------------------------------------------------

    def prerender(self, select: str = USER_SELECT, page_size: int = 200) -> int:
        """Render the initial-round pages once; served as-is while the directory is unchanged.

        Returns the number of pages rendered. Any later change discards the rendering.
        """
        fields = tuple(select.split(","))
        with self._lock:
            version, entries = self.snapshot()
            pages = {
                offset: render_entries(entries[offset : offset + page_size], fields)
                for offset in range(0, len(entries), page_size)
            }
            self._prerendered = (version, fields, page_size, pages)
            return len(pages)

    def prerendered(self, version: int, fields: tuple[str, ...], page_size: int, offset: int) -> bytes | None:
        pre = self._prerendered
        if pre is None or pre[0] != version or pre[1] != fields or pre[2] != page_size:
            return None
        return pre[3].get(offset)


def project(user: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The selected properties of a user, ``id`` always first, unset ones as explicit null."""
    out = {"id": user["id"]}
    for f in fields:
        if f != "id":
            out[f] = user.get(f)
    return out


def render_entries(entries: list[Entry], fields: tuple[str, ...]) -> bytes:
    """The JSON array of a delta page's ``value``."""
    items: list[dict[str, Any]] = []
    for e in entries:
        if isinstance(e, Removed):
            items.append({"id": e.id, "@removed": {"reason": e.reason}})
        else:
            items.append(project(e, fields))
    return orjson.dumps(items)


def iso(when: datetime) -> str:
    """Graph's timestamp format: UTC with a ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
