"""API fuzzing with schemathesis against ``/openapi.json``: every operation, valid and invalid
paths and parameters (``GenerationMode.POSITIVE`` and ``NEGATIVE``), under every kind of caller.

Checks for each response: never a 5xx, never a traceback; JSON errors are ``{"error": ...}``;
the security headers are on every answer; schemathesis' conformance checks (status documented or a
plain 404/405/422, content type, response schema); and authorization holds for whatever path the
fuzzer built: a 200 only ever answers a caller whose tenant, role and catalogs allow it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licsync import db
from licsync.api.app import SECURITY_HEADERS
from licsync.api.auth import FailureLimiter
from tests.api.seed import NOW, seed
from tests.api.seed import settings as api_settings
from tests.faults import ledger
from tests.faults.world import SOAK

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # schemathesis and starlette.testclient import-time notices
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS

EXAMPLES = 400 if SOAK else 40
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not SOAK,
                suppress_health_check=list(HealthCheck))
CALLERS = ["admin", "cat_a", "platform", "other_admin", "other_platform", "revoked", "none", "garbage"]
WHO = {"admin": ("contoso", "tenant-admin", set()), "cat_a": ("contoso", "catalog-admin", {"cat-a"}),
       "platform": ("contoso", "platform", set()), "other_admin": ("fabrikam", "tenant-admin", set()),
       "other_platform": ("fabrikam", "platform", set())}
TENANT_PATH = re.compile(r"^/api/v1/tenants/(?P<name>[^/]+)/(?P<rest>.+)$")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    from licsync.api import create_app

    tmp: Path = tmp_path_factory.mktemp("api-fuzz")
    engine = db.get_engine(f"sqlite:///{tmp}/api.db")
    db.upgrade(engine)
    seeded = seed(engine)
    app = create_app(api_settings(), engine, clock=lambda: NOW, limiter=FailureLimiter(limit=10**9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema, seeded.tokens
    engine.dispose()


def operations() -> list[tuple[str, GenerationMode]]:
    """Every operation of the OpenAPI document, valid requests, and invalid ones where it has parameters."""
    from licsync.api import create_app

    engine = db.get_engine("sqlite://")
    app = create_app(api_settings(), engine)
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if op.get("parameters") else [])
            out += [(f"{method.upper()} {path}", mode) for mode in modes]
    engine.dispose()
    return sorted(out, key=lambda x: (x[0], x[1].value))


def allowed(who: str, method: str, path: str) -> bool:
    """May this caller get a 200 here? (SPEC §5 and the roles in licsync.tokens.)"""
    m = TENANT_PATH.match(path)
    if m is None:
        return who in WHO or path in ("/healthz", "/metrics", "/openapi.json") or not path.startswith("/api/")
    if who not in WHO:
        return False
    tenant, role, cats = WHO[who]
    if m["name"] != tenant:
        return False
    rest = m["rest"]
    if rest.startswith("access/"):
        return role in ("platform", "tenant-admin")
    if rest.startswith("catalogs/"):
        cat = rest.split("/")[1]
        return role == "tenant-admin" or (role == "catalog-admin" and cat in cats)
    if rest.startswith("export/"):
        return role in ("tenant-admin", "catalog-admin")
    return role == "tenant-admin"


@pytest.mark.parametrize(("label", "mode"), operations(), ids=lambda v: v if isinstance(v, str) else
                         {"positive": "valid", "negative": "invalid"}[v.value])
def test_fuzz_every_operation(api: tuple[Any, dict[str, str]], label: str, mode: GenerationMode) -> None:
    schema, tokens = api
    method, path = label.split(" ", 1)
    operation = schema[path][method].ok() if hasattr(schema[path][method], "ok") else schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode), who=st.sampled_from(CALLERS))
    def run(case: Any, who: str) -> None:
        headers = {}
        if who == "garbage":
            headers["Authorization"] = "Bearer lsy_0123456789abcdef_" + "x" * 43
        elif who != "none":
            headers["Authorization"] = f"Bearer {tokens[who]}"
        case.headers = {**(case.headers or {}), **headers}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            response = case.call()
        ledger.fuzzed(f"API requests ({'valid' if mode == GenerationMode.POSITIVE else 'invalid'})")
        body = response.text
        assert response.status_code < 500, (response.status_code, case.formatted_path, body[:300])
        assert "Traceback" not in body
        header = {k.lower(): v[0] for k, v in response.headers.items()}
        for name, value in SECURITY_HEADERS.items():
            assert header.get(name.lower()) == value, name
        if response.status_code != 200 and header.get("content-type", "").startswith("application/json"):
            assert set(response.json()) == {"error"}, body[:300]
        if response.status_code == 200:
            assert allowed(who, method, case.formatted_path), f"{who} got 200 on {case.formatted_path}"
        if response.status_code not in (404, 405, 422):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case.validate_response(response, checks=[c for c in CHECKS.get_all()
                                                         if c.__name__ in _CONFORMANCE])

    run()


_CONFORMANCE = {"not_a_server_error", "status_code_conformance", "content_type_conformance",
                "response_schema_conformance", "response_headers_conformance"}
