"""Wire helpers of the emulator: replies, OData error bodies, ``$select`` parsing, opaque tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from licsync.graph.emulator_auth import AuthError, graph_error
from licsync.graph.emulator_state import DEFAULT_SELECT


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers: Starlette-free so the semantics can be tested without a server."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds the server stalls before answering (a client timeout)
    cut: bool = False  # the connection closes after the headers and half of the body


def error_reply(err: AuthError) -> Reply:
    """An AuthError (an OData or AAD error) as a reply."""
    return Reply(err.status, orjson.dumps(err.body), err.headers)


def graph_reply(status: int, code: str, message: str) -> Reply:
    """A Graph OData error reply: ``{"error": {"code": ..., "message": ...}}``."""
    return error_reply(graph_error(status, code, message))


def select_fields(select: str | None) -> tuple[str, ...]:
    """``$select`` as a tuple with ``id`` first; Graph's default set when absent."""
    if not select:
        return DEFAULT_SELECT
    names = tuple(dict.fromkeys(s.strip() for s in select.split(",") if s.strip()))
    return names if "id" in names else ("id", *names)


class TokenCodec:
    """Opaque, tamper-evident tokens: base64url(JSON) + '.' + truncated HMAC, keyed per tenant.

    Each token has a kind ("delta", "round", "list"), so one kind is never accepted as another.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _tag(self, raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(self._key, raw, hashlib.sha256).digest()[:12])

    def encode(self, kind: str, data: dict[str, Any]) -> str:
        raw = base64.urlsafe_b64encode(orjson.dumps({**data, "kind": kind})).rstrip(b"=")
        return (raw + b"." + self._tag(raw)).decode()

    def decode(self, kind: str, token: str) -> dict[str, Any] | None:
        raw, _, tag = token.encode().partition(b".")
        if not hmac.compare_digest(tag, self._tag(raw)):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and data.get("kind") == kind else None
