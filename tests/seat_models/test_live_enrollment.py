"""Every rule of the ``live_enrollment`` model (SPEC §1, seed 001) as a row of a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from licsync.seat_models.live_enrollment import LiveEnrollment, LiveHolder, LiveTerms, ReuseFigures, evaluate, plan
from licsync.seat_models.reasons import ModelReason, describe
from licsync.seats import Account, Reason

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OK = Account(enabled=True)
OPEN = LiveEnrollment("cat1", "c1")  # no expiry
LATER = LiveEnrollment("cat1", "c2", expires_at=NOW + timedelta(days=30))
EXPIRED = LiveEnrollment("cat1", "c3", expires_at=NOW - timedelta(days=1))
EXPIRES_NOW = LiveEnrollment("cat1", "c4", expires_at=NOW)
UNPUBLISHED = LiveEnrollment("cat1", "c5", course_status="unpublished")
DELETED = LiveEnrollment("cat1", "c6", course_status="deleted")
OFF_LIST = LiveEnrollment("cat2", "c7", on_learner_list=False)
TERMS = LiveTerms(seats=100, overage="tiered", reuse_limit=3)

# (rule, holder, expected action or None, expected reason)
RULES = [
    ("an enrollment without expiry is live: takes", LiveHolder("u", OK, (OPEN,)), "take",
     ModelReason.ENROLLMENT_LIVE),
    ("an enrollment expiring later is live: takes", LiveHolder("u", OK, (LATER,)), "take",
     ModelReason.ENROLLMENT_LIVE),
    ("access is not needed: enrolled is enough", LiveHolder("u", OK, (LATER,), first_enrolled_at=NOW), "take",
     ModelReason.ENROLLMENT_LIVE),
    ("an unpublished course still counts", LiveHolder("u", OK, (UNPUBLISHED,)), "take",
     ModelReason.ENROLLMENT_LIVE),
    ("only expired enrollments: no seat", LiveHolder("u", OK, (EXPIRED,)), None,
     ModelReason.ALL_ENROLLMENTS_EXPIRED),
    ("expiring every enrollment frees the seat", LiveHolder("u", OK, (EXPIRED,), holds_seat=True), "free",
     ModelReason.ALL_ENROLLMENTS_EXPIRED),
    ("an enrollment expiring at this instant is no longer live", LiveHolder("u", OK, (EXPIRES_NOW,),
                                                                             holds_seat=True), "free",
     ModelReason.ALL_ENROLLMENTS_EXPIRED),
    ("one live enrollment among expired ones keeps the seat", LiveHolder("u", OK, (EXPIRED, LATER),
                                                                          holds_seat=True), None,
     ModelReason.ENROLLMENT_LIVE),
    ("no enrollment at all frees", LiveHolder("u", OK, (), holds_seat=True), "free",
     Reason.LAST_ENROLLMENT_REMOVED),
    ("a deleted course is no enrollment", LiveHolder("u", OK, (DELETED,), holds_seat=True), "free",
     Reason.COURSE_DELETED),
    ("off the learner list is no enrollment", LiveHolder("u", OK, (OFF_LIST,), holds_seat=True), "free",
     Reason.REMOVED_FROM_LEARNER_LIST),
    ("expired beats deleted/off-list as the reason", LiveHolder("u", OK, (EXPIRED, DELETED), holds_seat=True),
     "free", ModelReason.ALL_ENROLLMENTS_EXPIRED),
    ("no unique id (not in the directory): no seat", LiveHolder("u", None, (OPEN,)), None,
     Reason.NOT_IN_DIRECTORY),
    ("a deactivated user frees", LiveHolder("u", Account(enabled=False), (OPEN,), holds_seat=True), "free",
     Reason.ACCOUNT_DISABLED),
    ("a removed (soft-deleted) user frees", LiveHolder("u", Account(deleted="soft"), (OPEN,), holds_seat=True),
     "free", Reason.ACCOUNT_SOFT_DELETED),
    ("a deleted user frees", LiveHolder("u", Account(deleted="hard"), (OPEN,), holds_seat=True), "free",
     Reason.ACCOUNT_DELETED),
    ("a restored user with a live enrollment takes again",
     LiveHolder("u", OK, (OPEN,), last_release_reason="account_disabled"), "take", Reason.RESTORED),
    ("a holder who still qualifies: nothing", LiveHolder("u", OK, (OPEN,), holds_seat=True), None,
     ModelReason.ENROLLMENT_LIVE),
]


@pytest.mark.parametrize(("rule", "holder", "action", "reason"), RULES, ids=[r[0] for r in RULES])
def test_rule(rule: str, holder: LiveHolder, action: str | None, reason: str) -> None:
    assert evaluate(holder, NOW)[1] == reason
    p = plan([holder], consumed_before=int(holder.holds_seat), handed_this_year=1, terms=TERMS, now=NOW)
    changes = p.changes()
    if action is None:
        assert changes == ()
    else:
        assert [(c.holder, c.action, str(c.reason)) for c in changes] == [("u", action, str(reason))]
        assert describe(str(reason))


def new(uid: str, day: int = 1, **kw: object) -> LiveHolder:
    return LiveHolder(uid, OK, (OPEN,), first_enrolled_at=datetime(2026, 5, day, tzinfo=UTC), **kw)  # type: ignore[arg-type]


# (rule, holders, consumed before, handed this year, terms, expected takes, expected refusals)
PLANS = [
    ("a new unique user within the reuses takes plainly", [new("a")], 0, 3,
     LiveTerms(2, "tiered", 1), [("a", "enrollment_live")], []),
    ("beyond the reuse limit a new user is flagged (tiered)", [new("a")], 0, 4,
     LiveTerms(2, "tiered", 1), [("a", "reuse_limit_exceeded")], []),
    ("beyond the reuse limit a new user is flagged (grace)", [new("a")], 0, 4,
     LiveTerms(2, "grace", 1), [("a", "reuse_limit_exceeded")], []),
    ("beyond the reuse limit a new user is refused (block)", [new("a")], 0, 4,
     LiveTerms(2, "block", 1), [], [("a", "reuse_limit")]),
    ("a returning user of the year uses no reuse", [new("a", handed_this_year=True)], 0, 4,
     LiveTerms(2, "block", 1), [("a", "enrollment_live")], []),
    ("the last reuse goes to the first enrolled", [new("b", 2), new("a", 3)], 0, 3,
     LiveTerms(2, "tiered", 1), [("b", "enrollment_live"), ("a", "reuse_limit_exceeded")], []),
    ("reuse_limit 0: no reuse at all", [new("a")], 0, 2, LiveTerms(2, "block", 0), [], [("a", "reuse_limit")]),
    ("block refuses beyond the seats", [new("a", 1), new("b", 2)], 1, 1, LiveTerms(2, "block", 3),
     [("a", "enrollment_live")], [("b", "seat_limit")]),
    ("tiered lets takes beyond the seats in", [new("a", 1), new("b", 2)], 2, 2, LiveTerms(2, "tiered", 3),
     [("a", "enrollment_live"), ("b", "enrollment_live")], []),
    ("a seat freed in the same plan makes room under block",
     [LiveHolder("old", OK, (EXPIRED,), holds_seat=True, handed_this_year=True), new("a")], 1, 1,
     LiveTerms(1, "block", 3), [("a", "enrollment_live")], []),
]


@pytest.mark.parametrize(("rule", "holders", "consumed", "handed", "terms", "takes", "refused"), PLANS,
                         ids=[r[0] for r in PLANS])
def test_plan_rule(rule: str, holders: list[LiveHolder], consumed: int, handed: int, terms: LiveTerms,
                   takes: list[tuple[str, str]], refused: list[tuple[str, str]]) -> None:
    p = plan(holders, consumed_before=consumed, handed_this_year=handed, terms=terms, now=NOW)
    assert [(c.holder, str(c.reason)) for c in p.takes] == takes
    assert [(c.holder, str(c.reason)) for c in p.refused] == refused


def test_the_seeds_cohorts_three_reuses_per_seat_then_flagged() -> None:
    """Seed 001: 1,000 licences put 1,000 people through, expire them all, put another 1,000 through, …
    Scaled to 3 seats: the first cohort and three reuses are plain; a fifth cohort is flagged."""
    terms = LiveTerms(seats=3, overage="tiered", reuse_limit=3)
    handed = 0
    for cohort in range(5):
        users = [new(f"c{cohort}-{i}") for i in range(3)]
        p = plan(users, consumed_before=0, handed_this_year=handed, terms=terms, now=NOW)
        handed += len(p.takes)
        reasons = {str(c.reason) for c in p.takes}
        assert reasons == ({"enrollment_live"} if cohort < 4 else {"reuse_limit_exceeded"}), cohort
    figures = ReuseFigures(seats=3, reuse_limit=3, handed=handed)
    assert (figures.reuses, figures.allowance, figures.left, figures.beyond_limit) == (12, 9, 0, 3)
    assert figures.as_dict()["exceeded"] is True


def test_same_inputs_same_plan() -> None:
    holders = [new("b", 2), new("a", 2), LiveHolder("x", OK, (EXPIRED,), holds_seat=True)]
    one = plan(holders, consumed_before=1, handed_this_year=0, terms=TERMS, now=NOW)
    two = plan(list(reversed(holders)), consumed_before=1, handed_this_year=0, terms=TERMS, now=NOW)
    assert one == two and [c.holder for c in one.takes] == ["a", "b"]
