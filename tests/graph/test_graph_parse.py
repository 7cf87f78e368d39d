"""Table tests of page parsing and status mapping: pure functions, no server."""

from __future__ import annotations

import orjson
import pytest

from licsync.errors import DeltaTokenExpired, PermanentError, TransientError
from licsync.graph.parse import UserRow, parse_delta_page, parse_id_page, parse_sign_in_page
from licsync.graph.status import error_for_response, parse_retry_after


def page(*users: dict, **links: str) -> bytes:
    return orjson.dumps({"value": list(users), **links})


def test_user_fields_land_in_order_and_explicit_null_stays_none() -> None:
    body = page(
        {
            "id": "u1",
            "userPrincipalName": "a@x",
            "mail": None,
            "displayName": "A",
            "givenName": "Ann",
            "surname": "Lee",
            "accountEnabled": False,
            "userType": "Guest",
            "employeeId": "E1",
        },
        **{"@odata.nextLink": "https://g/next"},
    )
    result = parse_delta_page(body)
    assert result.rows == [UserRow("u1", None, "a@x", None, "A", "Ann", "Lee", "E1", "Guest", False)]
    assert (result.next_link, result.delta_link) == ("https://g/next", None)
    assert type(result.rows[0]) is UserRow


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        ({"reason": "changed"}, "changed"),
        ({"reason": "deleted"}, "deleted"),
        ({"reason": "other"}, "changed"),
        ({}, "changed"),
        ("weird", "changed"),
    ],
)
def test_removed_reasons(removed: object, expected: str) -> None:
    result = parse_delta_page(page({"id": "u1", "@removed": removed}, **{"@odata.deltaLink": "https://g/d"}))
    assert result.rows[0].removed == expected
    assert result.rows[0][2:] == (None,) * 8
    assert result.delta_link == "https://g/d"


def test_empty_page_with_next_link() -> None:
    result = parse_delta_page(page(**{"@odata.nextLink": "https://g/n"}))
    assert result.rows == [] and result.next_link == "https://g/n"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        b'{"value": [',
        b"[]",
        b'{"value": {}}',
        b'{"nothing": 1}',
        page({"displayName": "no id"}),
        page({"id": None}),
        page({"id": ""}),
        page({"id": 5}),
        orjson.dumps({"value": ["not an object"]}),
        orjson.dumps({"value": [], "@odata.nextLink": 3}),
    ],
)
def test_malformed_pages_are_permanent(body: bytes) -> None:
    with pytest.raises(PermanentError, match="malformed page"):
        parse_delta_page(body)


def test_malformed_message_is_truncated() -> None:
    with pytest.raises(PermanentError) as info:
        parse_delta_page(b"x" * 10_000)
    assert len(str(info.value)) < 300


def test_id_and_sign_in_pages() -> None:
    ids, nxt = parse_id_page(page({"id": "a"}, {"id": "b"}, **{"@odata.nextLink": "https://g/n"}))
    assert ids == ["a", "b"] and nxt == "https://g/n"
    pairs, nxt = parse_sign_in_page(
        page(
            {"id": "a", "signInActivity": {"lastSignInDateTime": "2026-11-01T10:00:00Z"}},
            {"id": "b", "signInActivity": None},
            {"id": "c"},
        )
    )
    assert [(i, w.isoformat() if w else None) for i, w in pairs] == [
        ("a", "2026-11-01T10:00:00+00:00"),
        ("b", None),
        ("c", None),
    ]
    assert nxt is None
    with pytest.raises(PermanentError):
        parse_id_page(page({"no": "id"}))


def err(code: str, message: str = "m", inner: str | None = None) -> bytes:
    e: dict = {"code": code, "message": message}
    if inner:
        e["innerError"] = {"code": inner}
    return orjson.dumps({"error": e})


@pytest.mark.parametrize(
    ("status", "body", "delta", "expected"),
    [
        (429, err("TooManyRequests"), False, TransientError),
        (503, b"<html/>", False, TransientError),
        (504, b"", True, TransientError),
        (500, err("generalException"), True, TransientError),
        (502, b"", False, TransientError),
        (400, err("syncStateNotFound"), True, DeltaTokenExpired),
        (400, err("resyncRequired"), True, DeltaTokenExpired),
        (400, err("badRequest", inner="syncStateNotFound"), True, DeltaTokenExpired),
        (400, err("badRequest", "Token is invalid: syncStateNotFound"), True, DeltaTokenExpired),
        (410, b"", True, DeltaTokenExpired),
        (400, err("syncStateNotFound"), False, PermanentError),  # not a delta call
        (400, err("badRequest"), True, PermanentError),
        (401, err("InvalidAuthenticationToken"), True, PermanentError),
        (403, err("Authorization_RequestDenied"), False, PermanentError),
        (404, err("Request_ResourceNotFound"), False, PermanentError),
    ],
)
def test_status_mapping(status: int, body: bytes, delta: bool, expected: type) -> None:
    error = error_for_response(status, body, {}, what="users/delta", permission="User.Read.All", delta=delta)
    assert type(error) is expected


def test_permission_named_and_body_truncated() -> None:
    error = error_for_response(403, b"x" * 5000, {}, what="sendMail", permission="Mail.Send")
    assert "Mail.Send" in str(error) and len(str(error)) < 500


def test_retry_after_reaches_transient_error() -> None:
    error = error_for_response(429, b"", {"retry-after": "7"}, what="x", permission="p")
    assert isinstance(error, TransientError) and error.retry_after == 7.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("2", 2.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        (None, None),
        ("nan", None),
        ("Thu, 01 Jan 1970 00:00:30 GMT", 20.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=10.0) == expected
