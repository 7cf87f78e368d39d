"""Parse raw Graph pages with orjson into plain tuples.

msgraph-sdk's typed models cost milliseconds per user and drop explicit ``null`` values, so
pages are parsed here instead. This runs once per user on a 1M-user tenant: one ``dict.get``
per field and a positional tuple build, nothing else per user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from licsync.errors import PermanentError, truncate

USER_SELECT = "id,userPrincipalName,mail,displayName,givenName,surname,accountEnabled,userType,employeeId"


class UserRow(NamedTuple):
    """One user entry of a delta page, as Graph sent it (explicit null and absent both -> None)."""

    id: str
    removed: str | None  # None, "changed" (soft delete, restorable) or "deleted" (gone for good)
    upn: str | None
    mail: str | None
    display_name: str | None
    given_name: str | None
    surname: str | None
    employee_id: str | None
    user_type: str | None
    account_enabled: bool | None


@dataclass(frozen=True, slots=True)
class DeltaPage:
    rows: list[UserRow]
    next_link: str | None
    delta_link: str | None


_new_row = tuple.__new__  # skips NamedTuple.__new__'s argument handling


def _malformed(what: str, body: bytes) -> PermanentError:
    return PermanentError(f"malformed page from Graph ({what}): {truncate(body.decode('utf-8', 'replace'), 200)}")


def _load_page(body: bytes) -> tuple[dict[str, Any], list[Any]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _malformed("not JSON", body) from None
    if not isinstance(doc, dict):
        raise _malformed("not a JSON object", body)
    value = doc.get("value")
    if not isinstance(value, list):
        raise _malformed("no 'value' list", body)
    return doc, value


def _link(doc: dict[str, Any], key: str, body: bytes) -> str | None:
    link = doc.get(key)
    if link is not None and not isinstance(link, str):
        raise _malformed(f"{key} is not a string", body)
    return link


def parse_delta_page(body: bytes) -> DeltaPage:
    """Turn one ``/users/delta`` response body into rows and links.

    Raises PermanentError for a body that is not a JSON object with a ``value`` list, or for an
    entry without a string ``id``: a sync must not guess about users it cannot identify.
    """
    doc, value = _load_page(body)
    rows: list[UserRow] = []
    append = rows.append
    try:
        for u in value:
            get = u.get
            uid = get("id")
            if uid.__class__ is not str or not uid:
                raise _malformed("user entry without id", body)
            removed = get("@removed")
            if removed is None:
                append(
                    _new_row(
                        UserRow,
                        (
                            uid,
                            None,
                            get("userPrincipalName"),
                            get("mail"),
                            get("displayName"),
                            get("givenName"),
                            get("surname"),
                            get("employeeId"),
                            get("userType"),
                            get("accountEnabled"),
                        ),
                    )
                )
            else:
                reason = removed.get("reason") if isinstance(removed, dict) else None
                state = "deleted" if reason == "deleted" else "changed"  # unknown reasons: restorable
                append(_new_row(UserRow, (uid, state, None, None, None, None, None, None, None, None)))
    except AttributeError:  # an entry that is not an object
        raise _malformed("user entry is not an object", body) from None
    return DeltaPage(rows, _link(doc, "@odata.nextLink", body), _link(doc, "@odata.deltaLink", body))


def parse_user_page(body: bytes) -> tuple[list[UserRow], str | None]:
    """Rows and nextLink of a ``/users?$select=…`` list page (a delta page without removals)."""
    page = parse_delta_page(body)
    return page.rows, page.next_link


def parse_user(body: bytes) -> UserRow:
    """One ``GET /users/{id}`` answer as a row."""
    rows = parse_delta_page(b'{"value":[' + body + b"]}").rows
    if rows[0].removed is not None:
        raise _malformed("a user carrying @removed", body)
    return rows[0]


def parse_id_page(body: bytes) -> tuple[list[str], str | None]:
    """Ids and nextLink of a list page such as ``/directory/deletedItems/microsoft.graph.user``."""
    doc, value = _load_page(body)
    try:
        ids = [u["id"] for u in value]
    except (KeyError, TypeError):
        raise _malformed("entry without id", body) from None
    if not all(isinstance(i, str) and i for i in ids):
        raise _malformed("entry without id", body)
    return ids, _link(doc, "@odata.nextLink", body)


def _parse_when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)  # Graph sends ...Z, which 3.11 accepts
    except ValueError:
        return None


def last_activity(activity: Any) -> datetime | None:
    """The later of ``lastSuccessfulSignInDateTime`` and ``lastNonInteractiveSignInDateTime``.

    ``lastSignInDateTime`` counts failed interactive attempts too, and misses SSO into an LMS
    (non-interactive): neither makes a user active. Tenants whose answers lack both fields
    (older API versions) fall back to it.
    """
    if not isinstance(activity, dict):
        return None
    seen = [_parse_when(activity.get(k)) for k in ("lastSuccessfulSignInDateTime", "lastNonInteractiveSignInDateTime")]
    if "lastSuccessfulSignInDateTime" not in activity and "lastNonInteractiveSignInDateTime" not in activity:
        seen = [_parse_when(activity.get("lastSignInDateTime"))]
    return max((w for w in seen if w is not None), default=None)


def parse_sign_in_page(body: bytes) -> tuple[list[tuple[str, datetime | None]], str | None]:
    """``(id, last activity)`` pairs (see :func:`last_activity`) and nextLink of a
    ``/users?$select=id,signInActivity`` page."""
    doc, value = _load_page(body)
    out: list[tuple[str, datetime | None]] = []
    try:
        for u in value:
            uid = u["id"]
            if not isinstance(uid, str) or not uid:
                raise _malformed("entry without id", body)
            out.append((uid, last_activity(u.get("signInActivity"))))
    except (KeyError, TypeError, AttributeError):
        raise _malformed("entry without id", body) from None
    return out, _link(doc, "@odata.nextLink", body)
