"""Every rule of the ``first_access`` model (SPEC §1, seed 000) as a row of a table, and its inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licsync.errors import InputError
from licsync.seat_models import first_access as fa

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 1, tzinfo=UTC)
JULY1 = datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2024, 12, 1, tzinfo=UTC)
RESPECT = ("harass-1", "What is Respect")


def launch(aid: str, when: datetime, content: tuple[str, str] = RESPECT, **kw: Any) -> fa.Launch:
    return fa.Launch(aid, content[0], when, content_title=content[1], **kw)


def consumed(aid: str, when: datetime, content: tuple[str, str] = RESPECT) -> fa.FirstAccess:
    return fa.FirstAccess(aid, content[0], content[1], when)


# (rule, existing consumption, launches, new, corrected, outside)
RULES = [
    ("the first interaction in the period consumes a seat", {}, [launch("s1", JULY1)], ["s1"], [], 0),
    ("any further content is free", {"s1": consumed("s1", JULY1)},
     [launch("s1", JULY1 + timedelta(days=3), ("c2", "Microlesson"))], [], [], 0),
    ("it is never freed nor consumed again in the period", {"s1": consumed("s1", JULY1)},
     [launch("s1", JULY1 + timedelta(days=90))], [], [], 0),
    ("two launches in one batch consume once, the earliest first",
     {}, [launch("s1", JULY1 + timedelta(hours=1), ("c2", "B")), launch("s1", JULY1)], ["s1"], [], 0),
    ("a late launch that happened earlier corrects the first content", {"s1": consumed("s1", JULY1, ("c2", "B"))},
     [launch("s1", JULY1 - timedelta(days=1))], [], ["s1"], 0),
    ("a launch exactly at the period start counts", {}, [launch("s1", START)], ["s1"], [], 0),
    ("a launch before the period consumes nothing", {}, [launch("s1", START - timedelta(seconds=1))], [], [], 1),
    ("a launch at the period's end consumes nothing", {}, [launch("s1", END)], [], [], 1),
    ("whatever was completed or for how long: a launch is enough", {}, [launch("s2", JULY1)], ["s2"], [], 0),
    ("one person under two activity ids consumes twice (never merged)", {},
     [launch("s1", JULY1, first_name="John", last_name="Smith"),
      launch("s9", JULY1, first_name="John", last_name="Smith")], ["s1", "s9"], [], 0),
]


@pytest.mark.parametrize(("rule", "existing", "launches", "new", "corrected", "outside"), RULES,
                         ids=[r[0] for r in RULES])
def test_rule(rule: str, existing: dict[str, fa.FirstAccess], launches: list[fa.Launch], new: list[str],
              corrected: list[str], outside: int) -> None:
    c = fa.consume(existing, launches, START, END)
    assert ([x.activity_id for x in c.new], [x.activity_id for x in c.corrected], c.outside_period) == (
        new, corrected, outside)


def test_the_first_content_is_the_one_reported() -> None:
    c = fa.consume({}, [launch("s1", JULY1 + timedelta(days=1), ("c2", "Other")), launch("s1", JULY1)], START, END)
    assert c.new == (fa.FirstAccess("s1", "harass-1", "What is Respect", JULY1),)


def test_the_seeds_worked_example() -> None:
    """Seed 000: purchased 16,000, consumed 18,260 → available −2,260 (an overage of 2,260, billed)."""
    f = fa.Figures(purchased=16_000, consumed=18_260)
    assert (f.available, f.overage, f.billable, f.billable_overage) == (-2_260, 2_260, 18_260, 2_260)


def test_confirmed_duplicates_are_billed_separately() -> None:
    f = fa.Figures(purchased=16_000, consumed=18_260, confirmed_duplicates=60)
    assert f.as_dict() == {"purchased": 16_000, "consumed": 18_260, "available": -2_260, "overage": 2_260,
                           "confirmed_duplicates": 60, "billable": 18_200, "billable_overage": 2_200}


def ident(aid: str, first: str = "", last: str = "", email: str = "", user: str = "") -> fa.Identity:
    return fa.Identity(aid, first, last, email, user)


# (rule, identities, expected pairs with what matched)
DUPLICATES = [
    ("the same first and last name", [ident("a", "Tim", "Brown"), ident("b", "tim ", "BROWN")],
     [("a", "b", ("name",))]),
    ("the same email, whatever the case", [ident("a", email="T.Brown@x.com"), ident("b", email="t.brown@x.com")],
     [("a", "b", ("email",))]),
    ("the same directory user", [ident("a", user="u-1"), ident("b", user="u-1")], [("a", "b", ("directory_user",))]),
    ("several matches are listed together", [ident("a", "Tim", "Brown", "t@x"), ident("b", "Tim", "Brown", "t@x")],
     [("a", "b", ("name", "email"))]),
    ("a first name alone is not a name match", [ident("a", "Tim"), ident("b", "Tim")], []),
    ("different people are not candidates", [ident("a", "Tim", "Brown"), ident("b", "Tom", "Brown")], []),
    ("three ids of one name give three pairs", [ident("a", "A", "B"), ident("b", "A", "B"), ident("c", "A", "B")],
     [("a", "b", ("name",)), ("a", "c", ("name",)), ("b", "c", ("name",))]),
]


@pytest.mark.parametrize(("rule", "identities", "pairs"), DUPLICATES, ids=[r[0] for r in DUPLICATES])
def test_candidate_duplicates(rule: str, identities: list[fa.Identity], pairs: list[tuple[str, str, tuple[str, ...]]]
                              ) -> None:
    found = fa.candidates("contoso", identities)
    assert [(c.activity_a, c.activity_b, c.matched_on) for c in found] == pairs
    assert all(c.id == fa.candidate_id("contoso", c.activity_a, c.activity_b) for c in found)


def test_confirmed_pairs_join_groups_around_the_earliest_first_access() -> None:
    first = {"a": JULY1 + timedelta(days=2), "b": JULY1, "c": JULY1 + timedelta(days=5), "d": JULY1}
    assert fa.duplicate_of([("a", "b"), ("b", "c")], first) == {"a": "b", "c": "b"}
    assert fa.duplicate_of([("a", "zz")], first) == {}  # not consumed in the period: ignored


def statement(verb: str = "launched", **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "id": "5f1c1c6e-0000-4000-8000-000000000001",
        "actor": {"objectType": "Agent", "name": "John Smith", "mbox": "mailto:john.smith@contoso.com",
                  "account": {"homePage": "https://lms.contoso.com", "name": "scorm-001"}},
        "verb": {"id": f"http://adlnet.gov/expapi/verbs/{verb}", "display": {"en-US": verb}},
        "object": {"id": "https://emtrain.example/content/harass-1",
                   "definition": {"name": {"en-US": "What is Respect"}}},
        "timestamp": "2024-07-01T09:00:00Z",
        "context": {"extensions": {"https://licsync.example/xapi/user_id": "u-42"}},
    }
    s.update(over)
    return s


def test_a_launched_statement_is_a_launch() -> None:
    launches, ignored = fa.parse_statements([statement(), statement("experienced"), statement("completed")], NOW)
    assert ignored == 1 and len(launches) == 2
    la = launches[0]
    assert (la.activity_id, la.user_id, la.first_name, la.last_name, la.email, la.content_id, la.content_title,
            la.occurred_at, la.source) == ("scorm-001", "u-42", "John", "Smith", "john.smith@contoso.com",
                                           "https://emtrain.example/content/harass-1", "What is Respect", JULY1,
                                           "xapi")


def test_a_bad_statement_refuses_the_whole_batch() -> None:
    bad = statement(actor={"name": "No Account"})
    with pytest.raises(InputError) as err:
        fa.parse_statements([statement(), bad, statement(timestamp="yesterday"), 7], NOW)
    assert err.value.problems == [
        "statement 1: actor.account.name (the learner's activity id) is missing",
        "statement 2: timestamp 'yesterday' is not an ISO-8601 date-time",
        "statement 3: is not a JSON object",
    ]


def test_a_statement_from_the_future_is_refused() -> None:
    with pytest.raises(InputError, match="1 problem"):
        fa.parse_statements([statement(timestamp="2025-06-01T00:00:00Z")], NOW)


def test_the_activity_csv_is_checked_whole_with_line_numbers() -> None:
    data = (",".join(fa.HEADER) + "\n"
            "s1,u1,John,Smith,j@x.com,c1,Intro,2024-07-01T09:00:00Z\n"
            ",u2,Ann,Lee,a@x.com,c1,Intro,2024-07-01T09:00:00Z\n"
            "s3,u3,Bo,Ek,b@x.com,c1,Intro,July 1st\n").encode()
    with pytest.raises(InputError) as err:
        fa.parse_activity(data, NOW)
    assert err.value.problems == ["line 3: activity_id is empty",
                                  "line 4: occurred_at 'July 1st' is not an ISO-8601 date or date-time"]
    ok = fa.parse_activity(data.split(b"\n,u2")[0] + b"\n", NOW)
    assert [x.activity_id for x in ok] == ["s1"]


def test_a_wrong_header_is_named() -> None:
    with pytest.raises(InputError) as err:
        fa.parse_activity(b"activity_id,user_id\ns1,u1\n", NOW)
    assert err.value.problems[0].startswith("line 1: missing column(s): first_name")
