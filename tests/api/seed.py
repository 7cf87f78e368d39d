"""A seeded licsync database for API, dashboard and benchmark runs: two tenants, two catalogs.

contoso (10 seats): ``cat-a`` Sales Academy (ann, cy, a formula-named user), ``cat-b`` Safety
Training (bob, cy); a released seat (gone). fabrikam (5 seats): ``cat-f`` (fay). Thirty days of
ledger snapshots. Tokens for every role, and a revoked one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from licsync import ledger, tokens
from licsync.config import Settings
from licsync.db import session_scope
from licsync.db.models import (
    Catalog,
    Course,
    DirectoryUser,
    Enrollment,
    LearnerListEntry,
    LedgerSnapshot,
    Seat,
)
from licsync.subscriptions import keys, registry
from licsync.subscriptions.terms import Terms

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
EVIL_NAME = '=HYPERLINK("http://evil.example/x","click me")'
CONTOSO_ID = "11111111-1111-1111-1111-111111111111"
FABRIKAM_ID = "22222222-2222-2222-2222-222222222222"


def settings_data(**tenant_extra: Any) -> dict[str, Any]:
    return {
        "tenant": [
            {"name": "contoso", "tenant_id": CONTOSO_ID, "client_id": "app-c", "client_secret": "env:NOPE",
             **tenant_extra},
            {"name": "fabrikam", "tenant_id": FABRIKAM_ID, "client_id": "app-f", "client_secret": "env:NOPE"},
        ],
        "schedule": {"sync_interval": "15m", "full_resync_interval": "24h"},
    }


def settings() -> Settings:
    return Settings.model_validate(settings_data())


@dataclass
class Seeded:
    tokens: dict[str, str]  # role name → raw token
    revoked_id: str


def _users(tenant: str, rows: list[tuple[str, str, list[str]]], course_of: dict[str, str], now: datetime) -> list[Any]:
    out: list[Any] = []
    for i, (uid, name, cats) in enumerate(rows):
        out.append(DirectoryUser(tenant=tenant, id=uid, upn=f"{uid}@{tenant}.example", display_name=name,
                                 account_enabled=True, deleted="none", first_seen=now - timedelta(days=60)))
        for cat in cats:
            out.append(Enrollment(tenant=tenant, course_id=course_of[cat], user_id=uid, role="learner",
                                  enrolled_at=now - timedelta(days=40)))
            out.append(LearnerListEntry(tenant=tenant, catalog_id=cat, user_id=uid, added_at=now - timedelta(days=40)))
        out.append(Seat(tenant=tenant, holder=uid, acquired_at=now - timedelta(days=30 - i), acquire_reason="enrolled"))
    return out


def _ledger(tenant: str, catalog: str, purchased: int, base: int, now: datetime) -> list[LedgerSnapshot]:
    rows = []
    for d in range(30):
        day = (now - timedelta(days=29 - d)).date().isoformat()
        used = base + (d * 3) // 29
        rows.append(LedgerSnapshot(tenant=tenant, day=day, catalog_id=catalog, purchased=purchased, consumed=used,
                                   available=purchased - used, overage=max(0, used - purchased), taken_at=now))
    return rows


def seed(engine: Engine, now: datetime = NOW, *, contoso_seats: int = 10, extra_users: int = 0) -> Seeded:
    private_pem, public_b64 = keys.generate_keypair()
    with session_scope(engine) as s:
        for tenant, sub_id, seats in (("contoso", "SUB-C", contoso_seats), ("fabrikam", "SUB-F", 5)):
            terms = Terms(id=sub_id, customer=tenant.title(), seats=seats, starts_at=datetime(2026, 1, 1, tzinfo=UTC),
                          ends_at=datetime(2027, 1, 1, tzinfo=UTC), issued_at=datetime(2025, 12, 1, tzinfo=UTC))
            registry.activate(s, tenant, keys.issue(private_pem, terms), public_b64, now - timedelta(days=60))
        s.add_all([
            Catalog(tenant="contoso", id="cat-a", name="Sales Academy"),
            Catalog(tenant="contoso", id="cat-b", name="Safety Training"),
            Catalog(tenant="fabrikam", id="cat-f", name="Fabrikam Onboarding"),
            Course(tenant="contoso", id="course-a1", catalog_id="cat-a", title="Selling 101"),
            Course(tenant="contoso", id="course-b1", catalog_id="cat-b", title="Ladders", status="unpublished"),
            Course(tenant="fabrikam", id="course-f1", catalog_id="cat-f", title="Welcome"),
        ])
        course_of = {"cat-a": "course-a1", "cat-b": "course-b1", "cat-f": "course-f1"}
        contoso = [("u-ann", "Ann Archer", ["cat-a"]), ("u-bob", "Bob Builder", ["cat-b"]),
                   ("u-cy", "Cy Both", ["cat-a", "cat-b"]), ("u-evil", EVIL_NAME, ["cat-a"])]
        contoso += [(f"u-x{i:05d}", f"Extra {i}", ["cat-a" if i % 2 else "cat-b"]) for i in range(extra_users)]
        s.add_all(_users("contoso", contoso, course_of, now))
        s.add_all(_users("fabrikam", [("u-fay", "Fay Fabrikam", ["cat-f"])], course_of, now))
        s.flush()
        for tenant in ("contoso", "fabrikam"):  # per-catalog counts are kept by every apply; seeded seats too
            ledger.refresh_catalogs(s, tenant, None)
        s.add(DirectoryUser(tenant="contoso", id="u-gone", upn="gone@contoso.example", display_name="Gone Person",
                            account_enabled=False, deleted="none"))
        s.add(Seat(tenant="contoso", holder="u-gone", acquired_at=now - timedelta(days=50),
                   released_at=now - timedelta(days=5), acquire_reason="enrolled", release_reason="account_disabled"))
        s.add_all(_ledger("contoso", "", contoso_seats, 2, now) + _ledger("contoso", "cat-a", contoso_seats, 1, now)
                  + _ledger("contoso", "cat-b", contoso_seats, 1, now) + _ledger("fabrikam", "", 5, 1, now))
        t = {
            "admin": tokens.create_token(s, "contoso", "tenant-admin", [], now, label="Contoso IT"),
            "cat_a": tokens.create_token(s, "contoso", "catalog-admin", ["cat-a"], now, label="Sales lead"),
            "platform": tokens.create_token(s, "contoso", "platform", [], now, label="LMS"),
            "other_admin": tokens.create_token(s, "fabrikam", "tenant-admin", [], now, label="Fabrikam IT"),
            "other_platform": tokens.create_token(s, "fabrikam", "platform", [], now, label="Fabrikam LMS"),
            "revoked": tokens.create_token(s, "contoso", "tenant-admin", [], now, label="old"),
        }
        revoked_id = tokens.token_id_of(t["revoked"])
        assert revoked_id is not None
        tokens.revoke(s, revoked_id, now)
    return Seeded(tokens=t, revoked_id=revoked_id)
