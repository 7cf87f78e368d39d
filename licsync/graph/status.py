"""The one place where Graph HTTP answers become licsync's typed errors.

Callers decide only by type: TransientError (retry, honouring ``retry_after`` when set),
DeltaTokenExpired (full resync), PermanentError (a person must act).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import orjson

from licsync.errors import DeltaTokenExpired, LicsyncError, PermanentError, TransientError, truncate

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# Codes Graph uses when it no longer knows a delta token; 400 or 410 both mean "resync".
_RESYNC_CODES = ("syncstatenotfound", "resyncrequired", "syncstateinvalid")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _error_codes(body: bytes) -> tuple[list[str], str]:
    """All ``code`` values (error and nested innerError) and the message of an OData error body."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [], ""
    err = doc.get("error") if isinstance(doc, dict) else None
    codes: list[str] = []
    message = ""
    while isinstance(err, dict):
        if isinstance(err.get("code"), str):
            codes.append(err["code"])
        if not message and isinstance(err.get("message"), str):
            message = err["message"]
        err = err.get("innerError") or err.get("innererror")
    return codes, message


def _is_resync(codes: list[str], message: str) -> bool:
    lowered = [c.lower() for c in codes]
    if any(c in _RESYNC_CODES for c in lowered):
        return True
    # Seen in the field: {"code": "badRequest", "message": "... syncStateNotFound ..."}
    msg = message.lower()
    return any(c in msg for c in _RESYNC_CODES)


def error_for_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    what: str,
    permission: str,
    delta: bool = False,
) -> LicsyncError:
    """Map a non-2xx Graph answer to the error a caller should act on.

    ``what`` names the call for the message ("users/delta"); ``permission`` is the application
    permission a 401/403 most likely lacks; ``delta`` enables the expired-token mapping.
    """
    text = truncate(body.decode("utf-8", "replace"))
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(headers.get("retry-after"))
        kind = "throttled" if status == 429 else "unavailable"
        return TransientError(f"Graph {what}: {kind} (HTTP {status}): {text}", retry_after=retry_after)
    codes, message = _error_codes(body)
    # Any 4xx carrying a sync-state code, and any 410 (with or without Location), mean "resync".
    if delta and (status == 410 or (400 <= status < 500 and status not in (401, 403) and _is_resync(codes, message))):
        return DeltaTokenExpired(f"Graph {what}: delta token no longer valid (HTTP {status}); full resync needed")
    if status == 401:
        return PermanentError(
            f"Graph {what}: HTTP 401, the access token was refused ({', '.join(codes) or 'no code'}); "
            f"check the app registration's credential and its {permission} application permission: {text}"
        )
    if status == 403:
        return PermanentError(
            f"Graph {what}: HTTP 403, access denied; grant the application permission {permission} "
            f"with admin consent: {text}"
        )
    return PermanentError(f"Graph {what}: HTTP {status}: {text}")
