"""The emulator's list endpoints and sendMail: ``/users`` (``$top``, ``startsWith`` shards, sign-in
activity), ``/users/$count``, ``/users/{id}``, ``/directory/deletedItems/microsoft.graph.user``.

A list is read from a snapshot taken at its first page and kept under an id its skiptokens carry,
so a sharded read of a million users copies each shard once, not once a page.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson

from licsync.graph.emulator_state import Directory, iso, project
from licsync.graph.emulator_wire import Reply, TokenCodec, graph_reply, select_fields

_MAX_LISTS = 128  # list snapshots kept per tenant (a sharded read holds 36); older skiptokens: 400
_STARTS_WITH = re.compile(r"^\s*startswith\(\s*userPrincipalName\s*,\s*'((?:[^']|'')*)'\s*\)\s*$", re.IGNORECASE)


def starts_with(expr: str | None) -> str | None:
    """The prefix of a ``startsWith(userPrincipalName,'…')`` filter, lowercased; ValueError for any other."""
    if expr is None:
        return None
    m = _STARTS_WITH.match(expr)
    if m is None:
        raise ValueError(expr)
    return m.group(1).replace("''", "'").lower()


class ListEndpoints:
    """Mixed into EmulatedTenant, which provides these attributes."""

    directory: Directory
    stats: Counter[str]
    outbox: list[dict[str, Any]]
    premium: bool
    _codec: TokenCodec
    _lock: threading.Lock

    def _init_lists(self) -> None:
        self._lists: OrderedDict[str, list[Any]] = OrderedDict()
        self._buckets: tuple[int, dict[str, list[dict[str, Any]]]] | None = None

    def _users_matching(self, prefix: str | None) -> list[dict[str, Any]]:
        """Active users whose UPN starts with ``prefix`` (case-insensitive), from a per-version index."""
        if prefix is None:
            return self.directory.active_users()
        version = self.directory.version
        buckets = self._buckets
        if buckets is None or buckets[0] != version:
            index: dict[str, list[dict[str, Any]]] = {}
            for user in self.directory.active_users():
                upn = (user.get("userPrincipalName") or "").lower()
                index.setdefault(upn[:1], []).append(user)
            buckets = self._buckets = (version, index)
        bucket = buckets[1].get(prefix[:1], []) if prefix else self.directory.active_users()
        if len(prefix) <= 1:
            return bucket
        return [u for u in bucket if (u.get("userPrincipalName") or "").lower().startswith(prefix)]

    def _list(
        self,
        query: Mapping[str, str],
        link_base: str,
        items: Callable[[], list[Any]],
        render: Callable[[Any], dict[str, Any]],
        default_top: int,
        max_top: int,
    ) -> Reply:
        """A ``$top``/``$skiptoken`` paged list over a snapshot taken at the first page."""
        if (skip := query.get("$skiptoken")) is not None:
            data = self._codec.decode("list", skip)
            with self._lock:
                snapshot = self._lists.get(data["l"]) if data is not None else None
            if data is None or snapshot is None:
                return graph_reply(400, "BadRequest", "Invalid skip token.")
            lid, offset, top = data["l"], int(data["o"]), int(data["top"])
        else:
            offset = 0
            try:
                top = min(int(query.get("$top") or default_top), max_top)
            except ValueError:
                return graph_reply(400, "BadRequest", "Invalid $top.")
            if top < 1:
                return graph_reply(400, "BadRequest", "Invalid $top.")
            snapshot, lid = items(), secrets.token_urlsafe(9)
            with self._lock:
                self._lists[lid] = snapshot
                while len(self._lists) > _MAX_LISTS:
                    self._lists.popitem(last=False)
        doc: dict[str, Any] = {"value": [render(item) for item in snapshot[offset : offset + top]]}
        if offset + top < len(snapshot):
            token = self._codec.encode("list", {"l": lid, "o": offset + top, "top": top})
            # As Graph's do, the link repeats $select (which decides the permission and the cost).
            select = query.get("$select")
            again = f"$select={quote(select, safe=',')}&" if select else ""
            doc["@odata.nextLink"] = f"{link_base}?{again}$skiptoken={token}"
        return Reply(200, orjson.dumps(doc), {"Content-Type": "application/json"})

    def deleted_users(self, query: Mapping[str, str], link_base: str, select: str | None) -> Reply:
        """``GET /directory/deletedItems/microsoft.graph.user``: soft-deleted (restorable) users."""
        self.stats["deletedItems"] += 1
        fields = select_fields(select)

        def render(item: tuple[dict[str, Any], datetime]) -> dict[str, Any]:
            return {**project(item[0], fields), "deletedDateTime": iso(item[1])}

        return self._list(query, link_base, self.directory.soft_deleted, render, 100, 999)

    def users(self, query: Mapping[str, str], link_base: str, select: str | None) -> Reply:
        """``GET /users``: ``$top`` ≤ 999 (≤ 500 with ``signInActivity``, which needs P1), and
        ``$filter=startsWith(userPrincipalName,'…')``."""
        self.stats["users"] += 1
        fields = select_fields(select)
        with_sign_in = "signInActivity" in fields
        if with_sign_in and not self.premium:
            return graph_reply(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        try:
            prefix = starts_with(query.get("$filter"))
        except ValueError:
            return graph_reply(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause.")
        plain = tuple(f for f in fields if f != "signInActivity")

        def render(user: dict[str, Any]) -> dict[str, Any]:
            row = project(user, plain)
            if with_sign_in:
                row["signInActivity"] = self.directory.sign_in_activity(user["id"])
            return row

        return self._list(
            query, link_base, lambda: self._users_matching(prefix), render, 100, 500 if with_sign_in else 999
        )

    def users_count(self, query: Mapping[str, str], consistency: str | None) -> Reply:
        """``GET /users/$count``: needs ``ConsistencyLevel: eventual``; takes the same ``$filter``."""
        self.stats["count"] += 1
        if (consistency or "").lower() != "eventual":
            return graph_reply(
                400, "Request_BadRequest", "Count is not currently supported without ConsistencyLevel: eventual."
            )
        try:
            prefix = starts_with(query.get("$filter"))
        except ValueError:
            return graph_reply(400, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause.")
        n = len(self._users_matching(prefix)) if prefix is not None else len(self.directory)
        return Reply(200, str(n).encode(), {"Content-Type": "text/plain"})

    def user(self, uid: str, select: str | None) -> Reply:
        """``GET /users/{id|upn}``: 404 for a user deleted (softly or for good) or never there."""
        self.stats["user"] += 1
        user = self.directory.find(uid)
        if user is None:
            return graph_reply(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        return Reply(200, orjson.dumps(project(user, select_fields(select))), {"Content-Type": "application/json"})

    def send_mail(self, sender: str, body: bytes) -> Reply:
        """``POST /users/{id|upn}/sendMail``: recorded in ``outbox``; 202 means accepted."""
        self.stats["sendMail"] += 1
        user = self.directory.find(sender)
        if user is None:
            return graph_reply(404, "ErrorInvalidUser", f"The requested user '{sender}' is invalid.")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        message = doc.get("message") if isinstance(doc, dict) else None
        if not isinstance(message, dict):
            return graph_reply(400, "ErrorInvalidRequest", "The request body must contain a message.")
        if not any(message.get(k) for k in ("toRecipients", "ccRecipients", "bccRecipients")):
            return graph_reply(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
        for header in message.get("internetMessageHeaders") or []:
            name = header.get("name") if isinstance(header, dict) else None
            if not isinstance(name, str) or name[:2].lower() != "x-":
                return graph_reply(
                    400,
                    "InvalidInternetMessageHeader",
                    f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
                )
        with self._lock:
            self.outbox.append(
                {
                    "sender": user["userPrincipalName"],
                    "sender_id": user["id"],
                    "message": message,
                    "saveToSentItems": doc.get("saveToSentItems", True),
                }
            )
        return Reply(202)
