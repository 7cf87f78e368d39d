"""Every rule of the ``role`` model (SPEC §1, seed 002) as a row of a table, and the pool figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from licsync.errors import InputError
from licsync.seat_models import role
from licsync.seat_models.reasons import ModelReason

MAPPING = {"teacher": ["elearn"], "observer": ["weclimb"], "coach": ["elearn", "weclimb"], "leader": ["combined"],
           "auditor": ["audit"]}
POOLS = [role.Pool("elearn", 2, 1), role.Pool("weclimb", 1, 1), role.Pool("combined", 1, 0)]
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# (rule, current roles, current seats, adds, removes, expected decisions (user, role, action, granted, takes,
#  returns, reason), expected assigned per pool)
RULES = [
    ("a role takes a seat of its pool", {}, {}, [("u", "teacher")], [],
     [("u", "teacher", "add", True, ("elearn",), (), None)], {"elearn": 2, "weclimb": 1, "combined": 0}),
    ("a full pool refuses with a clear reason", {}, {}, [("u", "observer")], [],
     [("u", "observer", "add", False, (), (), ModelReason.POOL_FULL)], {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("a pool the subscription lacks refuses", {}, {}, [("u", "auditor")], [],
     [("u", "auditor", "add", False, (), (), ModelReason.POOL_NOT_LICENSED)],
     {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("a role that needs no pool takes nothing", {}, {}, [("u", "student")], [],
     [("u", "student", "add", True, (), (), None)], {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("the combined pool is an ordinary pool", {}, {}, [("u", "leader")], [],
     [("u", "leader", "add", True, ("combined",), (), None)], {"elearn": 1, "weclimb": 1, "combined": 1}),
    ("a second role on the same pool takes no second seat", {"u": {"teacher"}}, {"u": {"elearn"}},
     [("u", "coach_free")], [], [("u", "coach_free", "add", True, (), (), None)],
     {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("a role is given whole or not at all", {}, {}, [("u", "coach")], [],
     [("u", "coach", "add", False, (), (), ModelReason.POOL_FULL)], {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("a role the user has already changes nothing", {"u": {"teacher"}}, {"u": {"elearn"}}, [("u", "teacher")], [],
     [], {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("removing the role gives the seat back", {"u": {"observer"}}, {"u": {"weclimb"}}, [], [("u", "observer")],
     [("u", "observer", "remove", True, (), ("weclimb",), None)], {"elearn": 1, "weclimb": 0, "combined": 0}),
    ("another role still needing the pool keeps the seat", {"u": {"teacher", "coach"}},
     {"u": {"elearn", "weclimb"}}, [], [("u", "teacher")], [("u", "teacher", "remove", True, (), (), None)],
     {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("removing a role the user lacks changes nothing", {}, {}, [], [("u", "teacher")], [],
     {"elearn": 1, "weclimb": 1, "combined": 0}),
    ("a batch returns seats first, so its additions can take them", {"v": {"observer"}}, {"v": {"weclimb"}},
     [("u", "observer")], [("v", "observer")],
     [("v", "observer", "remove", True, (), ("weclimb",), None), ("u", "observer", "add", True, ("weclimb",), (),
                                                                  None)],
     {"elearn": 1, "weclimb": 1, "combined": 0}),
]


@pytest.mark.parametrize(("rule", "roles", "seats", "add", "remove", "decisions", "assigned"), RULES,
                         ids=[r[0] for r in RULES])
def test_rule(rule: str, roles: dict[str, set[str]], seats: dict[str, set[str]], add: list[tuple[str, str]],
              remove: list[tuple[str, str]], decisions: list[tuple[object, ...]], assigned: dict[str, int]) -> None:
    p = role.plan(roles, seats, POOLS, MAPPING, add=add, remove=remove)
    assert [(d.user_id, d.role, d.action, d.granted, d.takes, d.returns, d.reason) for d in p.decisions] == decisions
    assert {x.name: x.assigned for x in p.pools} == assigned
    assert all(x.assigned <= x.total for x in p.pools)
    for d in p.refused:
        assert d.pool and d.pool in d.sentence and "refused" in d.sentence


def test_a_pool_is_never_over_allocated() -> None:
    p = role.plan({}, {}, [role.Pool("elearn", 3, 0)], MAPPING, add=[(f"u{i}", "teacher") for i in range(7)])
    assert [d.user_id for d in p.granted] == ["u0", "u1", "u2"]
    assert [(d.user_id, str(d.reason)) for d in p.refused] == [(f"u{i}", "pool_full") for i in range(3, 7)]
    assert p.pools == (role.Pool("elearn", 3, 3),)


@pytest.mark.parametrize(("total", "assigned", "available", "pct"), [(100, 87, 13, 87.0), (50, 50, 0, 100.0),
                                                                      (0, 0, 0, None), (3, 1, 2, 33.3)])
def test_pool_figures(total: int, assigned: int, available: int, pct: float | None) -> None:
    p = role.Pool("elearn", total, assigned)
    assert p.as_dict() == {"pool": "elearn", "total": total, "assigned": assigned, "available": available,
                           "usage_pct": pct}


# (rule, assigned at, last sign-in, inactive?)
INACTIVE = [
    ("signed in yesterday: active", NOW - timedelta(days=400), NOW - timedelta(days=1), False),
    ("last sign-in 91 days ago: inactive", NOW - timedelta(days=400), NOW - timedelta(days=91), True),
    ("last sign-in exactly 90 days ago: not yet", NOW - timedelta(days=400), NOW - timedelta(days=90), False),
    ("never signed in, assigned 91 days ago: inactive", NOW - timedelta(days=91), None, True),
    ("never signed in, assigned last week: not yet", NOW - timedelta(days=7), None, False),
]


@pytest.mark.parametrize(("rule", "assigned_at", "seen", "flagged"), INACTIVE, ids=[r[0] for r in INACTIVE])
def test_inactive_assignments(rule: str, assigned_at: datetime, seen: datetime | None, flagged: bool) -> None:
    out = role.inactive([("u", "elearn", assigned_at)], {"u": seen}, NOW, 90)
    assert out == ([("u", "elearn", seen)] if flagged else [])


def test_the_roles_csv() -> None:
    assert role.parse_roles(b"user_id,role\nu1,Teacher\nu1,teacher\nu2,observer\n") == [("u1", "teacher"),
                                                                                          ("u2", "observer")]
    with pytest.raises(InputError) as err:
        role.parse_roles(b"user_id,role\nu1,\n")
    assert err.value.problems == ["line 2: role is empty"]
