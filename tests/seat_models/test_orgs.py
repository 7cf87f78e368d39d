"""Organisations with parents and children, and the user license report of seed 001."""

from __future__ import annotations

import pytest

from licsync.errors import InputError
from licsync.seat_models.orgs import HEADER, Org, parse_orgs, rollup


def csv(*rows: str) -> bytes:
    return (",".join(HEADER) + "\n" + "\n".join(rows) + "\n").encode()


def test_parse_a_tree_with_several_catalogs_per_org() -> None:
    orgs = parse_orgs(csv("acme,Acme,,100,", "sales,Sales,acme,40,cat-s1", "sales,Sales,acme,40,cat-s2",
                          "ops,Operations,acme,,cat-o"))
    assert orgs == [Org("acme", "Acme", None, 100, ()), Org("sales", "Sales", "acme", 40, ("cat-s1", "cat-s2")),
                    Org("ops", "Operations", "acme", None, ("cat-o",))]


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (("a,A,,x,",), "line 2: user_limit 'x' is not a whole number ≥ 0"),
        (("a,A,zz,1,",), "line 2: parent_id 'zz' is not an org_id of the file"),
        (("a,A,a,1,",), "line 2: an organisation cannot be its own parent"),
        (("a,A,b,1,", "b,B,a,1,"), "line 2: the parents of org 'a' form a cycle (a → b → a)"),
        (("a,A,,1,c1", "b,B,,1,c1"), "line 3: catalog 'c1' already belongs to org 'a' (line 2)"),
        (("a,A,,1,c1", "a,Other,,1,c2"), "line 3: org 'a' has org_name 'Other' here but 'A' on line 2"),
        ((",A,,1,",), "line 2: org_id is empty"),
    ],
)
def test_bad_files_are_refused_whole(rows: tuple[str, ...], problem: str) -> None:
    with pytest.raises(InputError) as err:
        parse_orgs(csv(*rows))
    assert problem in err.value.problems


ORGS = [Org("acme", "Acme", None, 100, ("cat-hq",)), Org("sales", "Sales", "acme", 40, ("cat-s",)),
        Org("ops", "Operations", "acme", 50, ("cat-o",)), Org("emea", "EMEA", "sales", 10, ("cat-e",)),
        Org("labs", "Labs", None, None, ()), Org("l1", "Lab One", "labs", 5, ("cat-l",)),
        Org("l2", "Lab Two", "labs", 0, ())]
USERS = {"cat-hq": {"ceo"}, "cat-s": {"s1", "s2", "both"}, "cat-e": {"e1", "both"}, "cat-o": {"both", "o1"},
         "cat-l": {"x", "y", "z", "w", "v", "u"}}


def test_the_report_rolls_children_up_into_parents() -> None:
    rows = {r.org_id: r for r in rollup(ORGS, USERS)}
    assert [r.org_id for r in rollup(ORGS, USERS)] == ["acme", "ops", "sales", "emea", "labs", "l1", "l2"]
    assert (rows["emea"].used, rows["sales"].used, rows["ops"].used) == (2, 4, 2)
    # ceo, s1, s2, e1, o1 and "both" — who trains in three of the organisations and counts once
    assert rows["acme"].as_dict() == {"org_id": "acme", "name": "Acme", "parent_id": None, "depth": 0,
                                      "user_limit": 100, "used": 6, "remaining": 94, "percentage_used": 6.0}


def test_limit_left_empty_is_the_sum_of_the_children_and_overuse_is_negative() -> None:
    rows = {r.org_id: r for r in rollup(ORGS, USERS)}
    assert (rows["labs"].user_limit, rows["labs"].used, rows["labs"].remaining) == (5, 6, -1)
    assert rows["labs"].percentage_used == 120.0
    assert rows["l2"].percentage_used is None  # a limit of 0: no percentage
    assert rows["emea"].depth == 2
