"""Every rule of the ``enrollment`` model (SPEC §1, seeds 003 and 004) as a row of a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from licsync.seats import (
    Account,
    EnrollmentFact,
    Holder,
    Limits,
    Plan,
    Reason,
    SeatChange,
    describe,
    evaluate,
    hold_reason,
    plan,
)

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
OK = Account(enabled=True)
LEARN = EnrollmentFact("cat1", "c1")
UNPUBLISHED = EnrollmentFact("cat1", "c2", course_status="unpublished")
DELETED_COURSE = EnrollmentFact("cat1", "c3", course_status="deleted")
OFF_LIST = EnrollmentFact("cat2", "c4", on_learner_list=False)
ADMIN = EnrollmentFact("cat1", "c1", role="admin")

# (rule, holder facts, holds a seat before, expected action or None, expected reason)
RULES = [
    ("enrolled learner takes a seat", Holder("u", OK, (LEARN,)), None, "take", Reason.ENROLLED),
    ("unpublished course still counts", Holder("u", OK, (UNPUBLISHED,)), None, "take", Reason.ENROLLED),
    ("deleted course does not count", Holder("u", OK, (DELETED_COURSE,)), None, None, Reason.COURSE_DELETED),
    (
        "deleted course frees the seat",
        Holder("u", OK, (DELETED_COURSE,), holds_seat=True),
        None,
        "free",
        Reason.COURSE_DELETED,
    ),
    (
        "deleted course keeps the seat when other training remains",
        Holder("u", OK, (DELETED_COURSE, LEARN), holds_seat=True),
        None,
        None,
        Reason.ENROLLED,
    ),
    ("admin only does not count", Holder("u", OK, (ADMIN,)), None, None, Reason.LAST_ENROLLMENT_REMOVED),
    (
        "admin only frees a held seat",
        Holder("u", OK, (ADMIN,), holds_seat=True),
        None,
        "free",
        Reason.LAST_ENROLLMENT_REMOVED,
    ),
    ("enrolled admin counts", Holder("u", OK, (ADMIN, LEARN)), None, "take", Reason.ENROLLED),
    (
        "disabled account frees",
        Holder("u", Account(enabled=False), (LEARN,), holds_seat=True),
        None,
        "free",
        Reason.ACCOUNT_DISABLED,
    ),
    (
        "disabled account does not take",
        Holder("u", Account(enabled=False), (LEARN,)),
        None,
        None,
        Reason.ACCOUNT_DISABLED,
    ),
    (
        "soft-deleted account frees",
        Holder("u", Account(deleted="soft"), (LEARN,), holds_seat=True),
        None,
        "free",
        Reason.ACCOUNT_SOFT_DELETED,
    ),
    (
        "hard-deleted account frees",
        Holder("u", Account(deleted="hard"), (LEARN,), holds_seat=True),
        None,
        "free",
        Reason.ACCOUNT_DELETED,
    ),
    (
        "hard delete wins over disabled",
        Holder("u", Account(enabled=False, deleted="hard"), (LEARN,), holds_seat=True),
        None,
        "free",
        Reason.ACCOUNT_DELETED,
    ),
    (
        "unknown accountEnabled is not a reason to free",
        Holder("u", Account(enabled=None), (LEARN,), holds_seat=True),
        None,
        None,
        Reason.ENROLLED,
    ),
    (
        "last enrollment removed frees",
        Holder("u", OK, (), holds_seat=True),
        None,
        "free",
        Reason.LAST_ENROLLMENT_REMOVED,
    ),
    (
        "removed from the last learner list frees",
        Holder("u", OK, (OFF_LIST,), holds_seat=True),
        None,
        "free",
        Reason.REMOVED_FROM_LEARNER_LIST,
    ),
    (
        "removed from one learner list keeps the seat from another catalog",
        Holder("u", OK, (OFF_LIST, LEARN), holds_seat=True),
        None,
        None,
        Reason.ENROLLED,
    ),
    (
        "restored account takes the seat back",
        Holder("u", OK, (LEARN,), last_release_reason="account_soft_deleted"),
        None,
        "take",
        Reason.RESTORED,
    ),
    (
        "re-enabled account takes the seat back",
        Holder("u", OK, (LEARN,), last_release_reason="account_disabled"),
        None,
        "take",
        Reason.RESTORED,
    ),
    (
        "restored account that no longer qualifies takes nothing",
        Holder("u", OK, (), last_release_reason="account_deleted"),
        None,
        None,
        Reason.LAST_ENROLLMENT_REMOVED,
    ),
    (
        "re-enrolment after unenrolment is an enrolment, not a restore",
        Holder("u", OK, (LEARN,), last_release_reason="last_enrollment_removed"),
        None,
        "take",
        Reason.ENROLLED,
    ),
    (
        "activated add-on identity counts without enrolment",
        Holder("f", None, (), activated=True),
        None,
        "take",
        Reason.ACTIVATED,
    ),
    (
        "deactivated add-on identity frees",
        Holder("f", None, (), activated=False, holds_seat=True),
        None,
        "free",
        Reason.DEACTIVATED,
    ),
    ("user not in the directory takes nothing", Holder("x", None, (LEARN,)), None, None, Reason.NOT_IN_DIRECTORY),
    (
        "holder that still qualifies changes nothing",
        Holder("u", OK, (LEARN,), holds_seat=True),
        None,
        None,
        Reason.ENROLLED,
    ),
]


@pytest.mark.parametrize(("rule", "holder", "_unused", "action", "reason"), RULES, ids=[r[0] for r in RULES])
def test_enrollment_rule(rule: str, holder: Holder, _unused: object, action: str | None, reason: Reason) -> None:
    p = plan([holder], consumed_before=1 if holder.holds_seat else 0, now=NOW)
    changes = p.changes()
    if action is None:
        assert changes == ()
    else:
        assert changes == (SeatChange(holder.holder_id, action, reason),)
    assert evaluate(holder)[1] is reason


def test_plan_is_deterministic_and_frozen() -> None:
    holders = [Holder(f"u{i}", OK, (LEARN,)) for i in (3, 1, 2)]
    a = plan(holders, consumed_before=0, now=NOW)
    b = plan(reversed(holders), consumed_before=0, now=NOW)
    assert a == b
    assert [c.holder for c in a.takes] == ["u1", "u2", "u3"]
    with pytest.raises(AttributeError):
        a.takes = ()  # type: ignore[misc]


def test_applying_the_same_facts_twice_changes_nothing_the_second_time() -> None:
    before = [Holder("a", OK, (LEARN,)), Holder("b", Account(enabled=False), (LEARN,), holds_seat=True)]
    first = plan(before, consumed_before=1, now=NOW)
    taken = {c.holder for c in first.takes}
    freed = {c.holder for c in first.frees}
    after = [
        Holder(
            h.holder_id,
            h.account,
            h.enrollments,
            holds_seat=(h.holder_id in taken) or (h.holds_seat and h.holder_id not in freed),
        )
        for h in before
    ]
    assert plan(after, consumed_before=first.consumed_after, now=NOW).is_empty


def test_block_mode_refuses_seats_beyond_the_maximum_in_enrolment_order() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 6, 1, tzinfo=UTC)
    holders = [
        Holder("late", OK, (LEARN,), first_enrolled_at=late),
        Holder("early", OK, (LEARN,), first_enrolled_at=early),
        Holder("gone", Account(enabled=False), (LEARN,), holds_seat=True),
    ]
    p = plan(holders, consumed_before=10, limits=Limits(seats=10, overage="block"), now=NOW)
    assert [c.holder for c in p.frees] == ["gone"]
    assert [c.holder for c in p.takes] == ["early"]
    assert [(c.holder, c.reason) for c in p.refused] == [("late", Reason.SEAT_LIMIT)]
    assert p.consumed_after == 10


@pytest.mark.parametrize("overage", ["grace", "bill", "tiered"])
def test_other_overage_modes_never_refuse(overage: str) -> None:
    holders = [Holder(f"u{i}", OK, (LEARN,)) for i in range(3)]
    p = plan(holders, consumed_before=10, limits=Limits(seats=10, overage=overage), now=NOW)
    assert len(p.takes) == 3 and not p.refused
    assert p.consumed_after == 13


@pytest.mark.parametrize(
    ("frees", "consumed", "threshold", "fraction", "held"),
    [
        (0, 100, 500, 0.1, False),
        (10, 100, 500, 0.1, False),  # exactly 10 %: not more than the fraction
        (11, 100, 500, 0.1, True),
        (501, 100_000, 500, 0.1, True),  # above the absolute threshold
        (500, 100_000, 500, 0.1, False),
        (1, 3, 500, 0.1, False),  # a single free is never a mass free
        (2, 3, 500, 0.1, True),
    ],
)
def test_mass_free_guard(frees: int, consumed: int, threshold: int, fraction: float, held: bool) -> None:
    p = Plan(
        frees=tuple(SeatChange(f"u{i}", "free", Reason.ACCOUNT_DELETED) for i in range(frees)), consumed_before=consumed
    )
    reason = hold_reason(p, threshold=threshold, fraction=fraction)
    assert (reason is not None) is held
    if held:
        assert str(frees) in reason


def test_every_reason_has_a_sentence() -> None:
    for r in Reason:
        assert describe(r) and "_" not in describe(r)
    assert SeatChange("alice", "free", Reason.ACCOUNT_DISABLED).sentence == (
        "alice frees a seat: the account is disabled in Microsoft Entra ID"
    )
