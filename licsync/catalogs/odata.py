"""Connector for an LMS365-style OData API: read the whole catalog snapshot, then apply it.

The API (``[[tenant]] lms_url``, e.g. ``https://api.365.systems/odata/v2``) is read-only OData
JSON. Every entity set answers ``{"value": [...], "@odata.nextLink": "..."}``; the connector follows
``@odata.nextLink`` verbatim until it is absent. Entity sets and the fields used:

* ``CourseCatalogs`` — ``Id``, ``Title``, optional ``Admins`` (e-mail addresses)
* ``Courses`` — ``Id``, ``CourseCatalogId``, ``Title``, ``Status`` (``Published`` | ``Unpublished`` |
  ``Deleted``); like LMS365, deleted courses may simply be left out of the listing: the list is
  complete, so a known course missing from it is marked deleted
* ``Learners`` — the learner list of every catalog: ``CourseCatalogId``, ``UserId``, ``Added``
* ``Enrollments`` — ``CourseId``, ``UserId``, ``UserPrincipalName``, ``Role`` (``Learner`` | ``Admin``),
  ``EnrollmentDate``, ``ExpirationDate``

``UserId`` is the user's Microsoft Entra object id, the id of the directory mirror.

Authentication: the API key (``lms_api_key = "env:NAME"`` or ``"file:/path"``) is sent as
``Authorization: Bearer <key>``; 401/403 are permanent (fix the key). TLS trusts the system store
plus the tenant's ``ca_bundle``; ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` never decide. 429 and
5xx are retried (``Retry-After`` honoured, bounded by ``max_retries`` and ``max_retry_after``), then
become a ``TransientError``. ``@odata.nextLink`` must stay on the API's origin, so the key is never
sent elsewhere.

Safety: the snapshot is read whole before anything is written (a failure halfway changes nothing),
and a read that lists no catalogs while some are known is refused, never taken as "all deleted".
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import func, insert, select
from sqlmodel import Session

from licsync.catalogs.bulk import refresh_planner_stats
from licsync.catalogs.records import (
    COURSE_STATUSES,
    ROLES,
    ActivationRecord,
    CatalogRecord,
    CatalogSnapshot,
    CourseRecord,
    EnrollmentRecord,
    LearnerRecord,
    parse_instant,
)
from licsync.catalogs.store import apply as apply_snapshot
from licsync.config import Settings, TenantConfig
from licsync.db import BULK_ROWS
from licsync.db.bulk import bulk_mode
from licsync.db.models import AuditLog, Catalog
from licsync.errors import ConfigError, PermanentError, TransientError, truncate
from licsync.graph.tls import client_ssl_context
from licsync.log import get_logger

SOURCE = "odata"
MAX_PAGES = 100_000  # per entity set: a nextLink loop is a server bug, not a reason to spin forever
Sleep = Callable[[float], None]


class NotExposed(Exception):
    """The LMS has no such entity set (404 on its first page): the source knows nothing of it."""


def _is_loopback(host: str | None) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


class ODataSource:
    """A :class:`licsync.catalogs.CatalogSource` reading an LMS365-style OData API."""

    name = SOURCE

    def __init__(
        self, tenant: TenantConfig, *, sleep: Sleep = time.sleep, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not tenant.lms_url or tenant.lms_api_key is None:
            raise ConfigError(f"tenant[{tenant.name}]: lms_url and lms_api_key are both needed for the LMS connector")
        u = urlsplit(tenant.lms_url)
        if not u.netloc or (u.scheme != "https" and not (u.scheme == "http" and _is_loopback(u.hostname))):
            raise ConfigError(f"tenant[{tenant.name}].lms_url: must be an https:// URL (plain http only on loopback)")
        self.base = tenant.lms_url.rstrip("/")
        self._origin = (u.scheme, u.netloc)
        self._tenant = tenant
        self._sleep = sleep
        self.requests = 0
        self.retries = 0

        self._client = httpx.Client(
            verify=client_ssl_context(tenant.ca_bundle),
            trust_env=False,  # no proxies, no CA bundle from the environment
            timeout=tenant.timeout.total_seconds(),
            follow_redirects=False,
            transport=transport,
            headers={"Authorization": f"Bearer {tenant.lms_api_key.resolve()}", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ODataSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP

    def _get(self, url: str, *, optional: bool = False) -> dict[str, Any]:
        """One GET with bounded retries; every HTTP status becomes a typed error here and only here.
        ``optional``: a 404 means the LMS does not expose this entity set (``NotExposed``)."""
        attempt = 0
        while True:
            self.requests += 1
            try:
                resp = self._client.get(url)
            except httpx.TransportError as exc:
                if _cert_refused(exc):
                    raise PermanentError(
                        f"LMS API: the server's TLS certificate is not trusted ({truncate(str(exc), 160)}); "
                        f"set tenant[{self._tenant.name}].ca_bundle to its CA"
                    ) from None
                resp, failure = None, f"LMS API unreachable ({type(exc).__name__}: {truncate(str(exc), 120)})"
            else:
                if resp.status_code == 200:
                    try:
                        data = orjson.loads(resp.content)
                    except orjson.JSONDecodeError:
                        raise PermanentError(f"LMS API: {self._path(url)} did not answer JSON") from None
                    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
                        raise PermanentError(f"LMS API: {self._path(url)} answered without a 'value' array")
                    return data
                if resp.status_code == 404 and optional:
                    raise NotExposed(self._path(url))
                if resp.status_code in (401, 403):
                    raise PermanentError(
                        f"LMS API refused the API key ({resp.status_code}) for tenant {self._tenant.name}: "
                        "check lms_api_key"
                    )
                failure = f"LMS API: {self._path(url)} answered {resp.status_code}: {truncate(resp.text, 200)}"
                if resp.status_code != 429 and resp.status_code < 500:
                    raise PermanentError(failure)
            wait = _retry_after(resp) if resp is not None else None
            limit = self._tenant.max_retry_after.total_seconds()
            if attempt >= self._tenant.max_retries or (wait is not None and wait > limit):
                raise TransientError(failure, retry_after=wait)
            attempt += 1
            self.retries += 1
            self._sleep(wait if wait is not None else min(limit, 0.5 * 2**attempt) * (0.5 + random.random() / 2))

    def _path(self, url: str) -> str:
        return urlsplit(url).path.rsplit("/", 1)[-1] or url

    def entities(self, entity_set: str, *, optional: bool = False) -> Iterator[dict[str, Any]]:
        """Every item of an entity set, page after page (``optional``: NotExposed when it has none)."""
        url: str | None = f"{self.base}/{entity_set}"
        pages = 0
        while url:
            page = self._get(url, optional=optional and pages == 0)
            yield from page["value"]
            url = page.get("@odata.nextLink")
            pages += 1
            if url is not None:
                u = urlsplit(url)
                if (u.scheme, u.netloc) != self._origin:
                    raise PermanentError(f"LMS API: {entity_set} nextLink leaves the API's origin; refused")
            if pages > MAX_PAGES:
                raise PermanentError(f"LMS API: {entity_set} has more than {MAX_PAGES} pages; refused")

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> CatalogSnapshot:
        catalogs = [
            CatalogRecord(_id(e, "Id", "CourseCatalogs"), str(e.get("Title") or ""), _admins(e))
            for e in self.entities("CourseCatalogs")
        ]
        courses = [
            CourseRecord(
                _id(e, "Id", "Courses"),
                _id(e, "CourseCatalogId", "Courses"),
                str(e.get("Title") or ""),
                _choice(e.get("Status") or "Published", COURSE_STATUSES, "Courses.Status"),
            )
            for e in self.entities("Courses")
        ]
        learners = [
            LearnerRecord(_id(e, "CourseCatalogId", "Learners"), _id(e, "UserId", "Learners"), _when(e, "Added"))
            for e in self.entities("Learners")
        ]
        enrollments = [
            EnrollmentRecord(
                _id(e, "CourseId", "Enrollments"),
                _id(e, "UserId", "Enrollments"),
                _choice(e.get("Role") or "Learner", ROLES, "Enrollments.Role"),
                _when(e, "EnrollmentDate"),
                _when(e, "ExpirationDate"),
                e.get("UserPrincipalName") or None,
            )
            for e in self.entities("Enrollments")
        ]
        try:  # add-on accounts that count on activation (Flow365), where the LMS exposes them
            activations: list[ActivationRecord] | None = [
                ActivationRecord(_id(e, "UserId", "Activations"), str(e.get("Product") or "flow365").lower(),
                                 e.get("DisplayName") or None, _when(e, "Activated"), _when(e, "Deactivated"))
                for e in self.entities("Activations", optional=True)
            ]
        except NotExposed:
            activations = None
        return CatalogSnapshot(catalogs, courses, learners, enrollments, activations=activations, complete_courses=True)


def _id(e: dict[str, Any], key: str, where: str) -> str:
    value = e.get(key)
    if value is None or value == "" or isinstance(value, bool | dict | list):
        raise PermanentError(f"LMS API: an item of {where} has no usable {key}: {truncate(repr(e), 160)}")
    return str(value)


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    v = str(value).strip().lower()
    if v not in allowed:
        raise PermanentError(f"LMS API: {where} {truncate(repr(value), 40)} is not one of {', '.join(allowed)}")
    return v


def _when(e: dict[str, Any], key: str) -> datetime | None:
    raw = e.get(key)
    if raw in (None, ""):
        return None
    try:
        return parse_instant(str(raw))
    except ValueError:
        raise PermanentError(f"LMS API: {key} {truncate(repr(raw), 40)} is not an ISO-8601 date-time") from None


def _admins(e: dict[str, Any]) -> tuple[str, ...] | None:
    admins = e.get("Admins")
    return None if admins is None else tuple(str(a) for a in admins)


def _cert_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def fetch_snapshot(
    tenant: TenantConfig, *, sleep: Sleep = time.sleep, transport: httpx.BaseTransport | None = None
) -> CatalogSnapshot:
    """Read every entity set, all pages, before anything is written."""
    with ODataSource(tenant, sleep=sleep, transport=transport) as source:
        return source.snapshot()


def pull(
    session: Session,
    settings: Settings,
    tenant: TenantConfig,
    now: datetime,
    *,
    sleep: Sleep = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> set[str]:
    """Read the whole snapshot, apply it as the truth of the OData catalogs; return the users to re-plan.

    Writes through the caller's session (the sync cycle's transaction) and plans nothing: the
    caller re-plans the returned ids together with the directory changes of its cycle.
    """
    started = time.monotonic()
    snap = fetch_snapshot(tenant, sleep=sleep, transport=transport)
    return apply_pulled(session, tenant, snap, now, started=started)


def apply_pulled(
    session: Session, tenant: TenantConfig, snap: CatalogSnapshot, now: datetime, *, started: float | None = None
) -> set[str]:
    """Apply a snapshot read by :func:`fetch_snapshot` (the async cycle reads it in a thread first)."""
    log = get_logger(tenant=tenant.name)
    started = time.monotonic() if started is None else started
    ca = Catalog.__table__  # type: ignore[attr-defined]
    if not snap.catalogs:
        known = (
            session.connection()
            .execute(select(func.count()).select_from(ca).where(ca.c.tenant == tenant.name, ca.c.source == SOURCE))
            .scalar_one()
        )
        if known:
            raise PermanentError(
                f"LMS API listed no course catalogs while {known} are known for tenant {tenant.name}; "
                "refusing to treat an empty read as 'everything was deleted'"
            )
    with bulk_mode(session):
        applied = apply_snapshot(session, tenant.name, snap, now, source=SOURCE, replace=True)
        if applied.rows_written >= BULK_ROWS:
            refresh_planner_stats(session)
    counts = applied.counts()
    if applied.changed:
        session.connection().execute(
            insert(AuditLog.__table__),  # type: ignore[attr-defined]
            [
                {
                    "at": now,
                    "tenant": tenant.name,
                    "actor": "licsync",
                    "action": "catalogs_pulled",
                    "subject": SOURCE,
                    "detail": counts,
                }
            ],
        )
    log.info("lms_pulled", duration_s=round(time.monotonic() - started, 3), **counts)
    return applied.affected
