"""The full reconcile's one streamed query sees exactly the facts the per-user loader sees.

A full reconcile (``plan_for(None)``) reads the tenant with one joined, streamed query; cycles and
imports read the users they touched with per-table ``IN`` queries. Both must agree on every fact of
every candidate, or a full reconcile would take or free seats an incremental cycle would not. The
tenant below mixes every state a fact can be in, seeded at random, on both databases.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync import ledger, reseat
from licsync.db import session_scope, upgrade
from licsync.db.models import Activation, Course, DirectoryUser, Enrollment, LearnerListEntry, Seat
from licsync.seat_models import enrollment_store
from licsync.subscriptions import keys, registry
from licsync.subscriptions.terms import Terms

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
T = "contoso"
STATUSES = ["published", "unpublished", "deleted"]


def _seed(engine: Engine, seed: int, users: int = 400) -> None:
    rnd = random.Random(seed)
    ids = [f"{rnd.choice('abcdefABCDEF0123_-')}{i:04d}-{rnd.getrandbits(32):08x}" for i in range(users)]
    courses = [
        {
            "tenant": T,
            "id": f"c{k}",
            "catalog_id": f"cat{k % 4}",
            "status": rnd.choice(["published", "unpublished", "deleted"]),
        }
        for k in range(12)
    ]
    directory, enrollments, learners, seats, activations = [], [], set(), [], []
    for i, uid in enumerate(ids):
        if rnd.random() < 0.9:  # the rest is not in the directory
            directory.append(
                {
                    "tenant": T,
                    "id": uid,
                    "account_enabled": rnd.choice([True, True, True, False, None]),
                    "deleted": rnd.choice(["none"] * 6 + ["soft", "hard"]),
                }
            )
        for c in rnd.sample(courses, rnd.choice([0, 1, 1, 2, 3, 5])):
            role = "admin" if rnd.random() < 0.15 else "learner"
            at = NOW - timedelta(days=rnd.randrange(400), seconds=rnd.randrange(86400))
            enrollments.append({"tenant": T, "course_id": c["id"], "user_id": uid, "role": role, "enrolled_at": at})
            if rnd.random() < 0.8:
                learners.add((c["catalog_id"], uid))
        for _ in range(rnd.choice([0, 0, 1, 2])):  # released seats, with their reasons
            released = NOW - timedelta(days=rnd.randrange(1, 90))
            reason = rnd.choice(["account_disabled", "account_deleted", "last_enrollment_removed", "course_deleted"])
            seats.append({"holder": uid, "released_at": released, "release_reason": reason})
        if rnd.random() < 0.5:
            seats.append({"holder": uid, "released_at": None, "release_reason": None})
        if i % 17 == 0:
            activations.append(
                {
                    "tenant": T,
                    "identity_id": uid,
                    "deactivated_at": None if rnd.random() < 0.5 else NOW - timedelta(days=1),
                }
            )
    with engine.begin() as c:
        c.execute(insert(Course.__table__), courses)  # type: ignore[attr-defined]
        c.execute(insert(DirectoryUser.__table__), directory)  # type: ignore[attr-defined]
        c.execute(insert(Enrollment.__table__), enrollments)  # type: ignore[attr-defined]
        c.execute(
            insert(LearnerListEntry.__table__),  # type: ignore[attr-defined]
            [{"tenant": T, "catalog_id": cat, "user_id": uid} for cat, uid in sorted(learners)],
        )
        c.execute(
            insert(Seat.__table__),  # type: ignore[attr-defined]
            [{"tenant": T, "acquired_at": NOW - timedelta(days=200), "acquire_reason": "enrolled", **s} for s in seats],
        )
        c.execute(insert(Activation.__table__), activations)  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_full_query_and_the_per_user_loader_agree(engine: Engine, seed: int) -> None:
    upgrade(engine)
    _seed(engine, seed)
    with Session(engine) as s:
        full = list(enrollment_store.tenant_holders(s, T, order=True))
        ids = [h.holder_id for h in full]
        assert len(ids) == len(set(ids)) > 300  # one holder per candidate
        per_user = {h.holder_id: h for h in enrollment_store.load_holders(s, T, ids, order=True)}
        assert {h.holder_id: h for h in full} == per_user
        # every candidate is there: open seat holders, enrolled learners, add-on identities
        assert any(h.account is None for h in full) and any(h.activated is False for h in full)
        assert any(h.last_release_reason for h in full if not h.holds_seat)


@pytest.mark.parametrize("overage", ["grace", "block"])
def test_a_full_reconcile_plans_what_planning_everyone_by_id_plans(engine: Engine, overage: str) -> None:
    upgrade(engine)
    _seed(engine, 3)
    private_pem, public_b64 = keys.generate_keypair()
    terms = Terms(
        id="SUB-1",
        customer="Contoso",
        seats=150,
        overage=overage,
        starts_at=NOW - timedelta(days=10),
        ends_at=NOW + timedelta(days=300),
        issued_at=NOW - timedelta(days=10),
    )
    with session_scope(engine) as s:
        registry.activate(s, T, keys.issue(private_pem, terms), public_b64, NOW - timedelta(days=1), actor="test")
    with Session(engine) as s:
        everyone = [h.holder_id for h in enrollment_store.tenant_holders(s, T)]
        full = reseat.plan(s, T, None, NOW).plan
        by_id = reseat.plan(s, T, everyone, NOW).plan
        open_seats = s.connection().execute(select(Seat.holder).where(Seat.released_at.is_(None))).all()  # type: ignore[union-attr]
    assert full.considered_ids == ledger.FULL and full.considered == len(everyone)
    assert (full.takes, full.frees, full.refused) == (by_id.takes, by_id.frees, by_id.refused)
    assert full.takes and full.frees and len(open_seats) == full.consumed_before
    if overage == "block":
        assert full.refused
