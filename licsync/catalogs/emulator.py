"""An emulator of the LMS365-style OData API that ``licsync.catalogs.odata`` reads, for tests and demos.

    with LmsEmulator(page_size=2) as lms:
        lms.add_catalog("cat-1", "Sales")
        lms.add_course("c-1", "cat-1", "Onboarding")
        lms.enroll("c-1", "user-1")          # also puts user-1 on cat-1's learner list, like LMS365
        tenant_cfg = ...(lms_url=lms.url, lms_api_key="env:X")  # X = lms.api_key

Serves plain http on 127.0.0.1 (uvicorn in a thread), or https with ``tls=make_test_pki(dir)``.
State is mutated from the test between pulls; deleting a course leaves it out of every listing, as
LMS365 does. Fault knobs: ``fail_next(n, status, after=k)`` answers ``status`` to ``n`` requests
once ``k`` more have succeeded; a wrong or missing key gets 401. ``requests`` counts requests served.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from licsync.graph.tls import TestPKI

ENTITY_SETS = ("CourseCatalogs", "Courses", "Learners", "Enrollments")


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Faults:
    remaining: int = 0
    status: int = 503
    after: int = 0
    retry_after: str | None = "0"


@dataclass
class LmsState:
    catalogs: dict[str, dict[str, Any]] = field(default_factory=dict)
    courses: dict[str, dict[str, Any]] = field(default_factory=dict)
    learners: dict[tuple[str, str], datetime] = field(default_factory=dict)
    enrollments: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    # Add-on accounts (Flow365); None: this LMS exposes no Activations entity set (404)
    activations: dict[str, dict[str, Any]] | None = None


class LmsEmulator:
    """The API over HTTP on 127.0.0.1, with state a test can change while it runs."""

    def __init__(self, *, api_key: str | None = None, page_size: int = 2, tls: TestPKI | None = None) -> None:
        self.tls = tls
        self.api_key = api_key or "lms-" + secrets.token_hex(8)
        self.page_size = page_size
        self.state = LmsState()
        self.requests = 0
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.app = Starlette(routes=[Route("/odata/v2/{entity_set}", self._serve, methods=["GET"])])

    # ------------------------------------------------------------------ state, from the test

    def add_catalog(self, catalog_id: str, title: str = "", admins: list[str] | None = None) -> None:
        with self._lock:
            self.state.catalogs[catalog_id] = {"Id": catalog_id, "Title": title or catalog_id, "Admins": admins or []}

    def add_course(self, course_id: str, catalog_id: str, title: str = "", status: str = "Published") -> None:
        with self._lock:
            self.state.courses[course_id] = {
                "Id": course_id,
                "CourseCatalogId": catalog_id,
                "Title": title or course_id,
                "Status": status,
            }

    def set_course_status(self, course_id: str, status: str) -> None:
        with self._lock:
            self.state.courses[course_id]["Status"] = status

    def delete_course(self, course_id: str) -> None:
        """Gone from every listing, its enrollments with it (LMS365 lists only actual courses)."""
        with self._lock:
            del self.state.courses[course_id]
            for key in [k for k in self.state.enrollments if k[0] == course_id]:
                del self.state.enrollments[key]

    def activate(self, user_id: str, at: datetime, *, product: str = "Flow365", name: str = "") -> None:
        """An add-on account that counts on activation; the first one exposes the Activations set."""
        with self._lock:
            if self.state.activations is None:
                self.state.activations = {}
            self.state.activations[user_id] = {"UserId": user_id, "Product": product, "DisplayName": name or user_id,
                                               "Activated": _iso(at), "Deactivated": None}

    def deactivate(self, user_id: str, at: datetime) -> None:
        with self._lock:
            assert self.state.activations is not None
            self.state.activations[user_id]["Deactivated"] = _iso(at)

    def add_learner(self, catalog_id: str, user_id: str, at: datetime | None = None) -> None:
        with self._lock:
            self.state.learners.setdefault((catalog_id, user_id), at or datetime.now(UTC))

    def remove_learner(self, catalog_id: str, user_id: str) -> None:
        """Off the learner list, and so unenrolled from every course of the catalog."""
        with self._lock:
            self.state.learners.pop((catalog_id, user_id), None)
            for key in list(self.state.enrollments):
                course = self.state.courses.get(key[0])
                if key[1] == user_id and key[2] == "Learner" and course and course["CourseCatalogId"] == catalog_id:
                    del self.state.enrollments[key]

    def enroll(
        self,
        course_id: str,
        user_id: str,
        role: str = "Learner",
        *,
        enrolled_at: datetime | None = None,
        expires_at: datetime | None = None,
        upn: str | None = None,
    ) -> None:
        at = enrolled_at or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        with self._lock:
            self.state.enrollments[(course_id, user_id, role)] = {
                "CourseId": course_id,
                "UserId": user_id,
                "UserPrincipalName": upn,
                "Role": role,
                "EnrollmentDate": _iso(at),
                "ExpirationDate": _iso(expires_at),
            }
            if role == "Learner":
                catalog = self.state.courses[course_id]["CourseCatalogId"]
                self.state.learners.setdefault((catalog, user_id), at)

    def unenroll(self, course_id: str, user_id: str, role: str = "Learner") -> None:
        with self._lock:
            self.state.enrollments.pop((course_id, user_id, role), None)

    def fail_next(self, n: int, status: int = 503, *, after: int = 0, retry_after: str | None = "0") -> None:
        """Answer ``status`` to the next ``n`` requests, once ``after`` more requests have succeeded."""
        with self._lock:
            self._faults = _Faults(remaining=n, status=status, after=after, retry_after=retry_after)

    # ------------------------------------------------------------------ HTTP

    def _items(self, entity_set: str) -> list[dict[str, Any]]:
        s = self.state
        if entity_set == "CourseCatalogs":
            return [s.catalogs[k] for k in sorted(s.catalogs)]
        if entity_set == "Courses":
            return [s.courses[k] for k in sorted(s.courses)]
        if entity_set == "Learners":
            return [{"CourseCatalogId": k[0], "UserId": k[1], "Added": _iso(s.learners[k])} for k in sorted(s.learners)]
        if entity_set == "Activations":
            return [dict(s.activations[k]) for k in sorted(s.activations or {})]
        return [s.enrollments[k] for k in sorted(s.enrollments)]

    async def _serve(self, request: Request) -> Response:
        entity_set = request.path_params["entity_set"]
        with self._lock:
            self.requests += 1
            f = self._faults
            if f.remaining and f.after <= 0:
                f.remaining -= 1
                headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                return JSONResponse(
                    {"error": {"code": "Fault", "message": "injected fault"}}, status_code=f.status, headers=headers
                )
            if f.remaining:
                f.after -= 1
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": {"code": "Unauthorized", "message": "invalid API key"}}, status_code=401)
            exposed = ENTITY_SETS + (("Activations",) if self.state.activations is not None else ())
            if entity_set not in exposed:
                return JSONResponse({"error": {"code": "NotFound", "message": "no such entity set"}}, status_code=404)
            items = self._items(entity_set)
        try:
            skip = int(request.query_params.get("$skiptoken", "0"))
        except ValueError:
            return JSONResponse({"error": {"code": "BadRequest", "message": "bad $skiptoken"}}, status_code=400)
        base = f"{self.url}/{entity_set}"
        body: dict[str, Any] = {
            "@odata.context": f"{self.url}/$metadata#{entity_set}",
            "value": items[skip : skip + self.page_size],
        }
        if skip + self.page_size < len(items):
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip + self.page_size}"
        return JSONResponse(body)

    # ------------------------------------------------------------------ server

    def start(self) -> LmsEmulator:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            access_log=False,
            ws="none",
            ssl_certfile=str(self.tls.server_cert) if self.tls else None,
            ssl_keyfile=str(self.tls.server_key) if self.tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="lms-emulator", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the LMS emulator did not start")
            threading.Event().wait(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}/odata/v2"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> LmsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
