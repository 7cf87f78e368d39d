"""``first_access`` end to end through the command line, against the Graph emulator (seed 000)."""

from __future__ import annotations

from licsync.seat_models.first_access import HEADER
from tests.seat_models.conftest import Cli


def test_activity_consumption_report_and_duplicates(cli: Cli) -> None:
    cli.directory.add_user(id="dir-ann", displayName="Ann Lee", mail="ann.lee@contoso.example")
    assert "first_access" in cli.activate("first_access", 3, "--overage", "bill")
    cli("sync", "--tenant", "contoso")
    f = cli.file("activity.csv", HEADER, [
        ["scorm-1", "e-1", "John", "Smith", "john@contoso.example", "harass-1", "What is Respect",
         "2026-02-01T09:00:00Z"],
        ["scorm-1", "e-1", "John", "Smith", "john@contoso.example", "harass-2", "Bystander", "2026-02-03T09:00:00Z"],
        ["scorm-9", "", "John", "Smith", "", "harass-3", "Speak Up", "2026-02-20T09:00:00Z"],  # new LMS
        ["ann-a", "dir-ann", "Ann", "Lee", "", "harass-1", "What is Respect", "2026-02-05T09:00:00Z"],
        ["ann-b", "", "Ann", "L.", "Ann.Lee@contoso.example", "harass-1", "What is Respect", "2026-02-06T09:00:00Z"],
        ["=cmd", "", "Eve", "", "", "harass-1", "What is Respect", "2026-02-07T09:00:00Z"],
    ])
    out = cli("import", "activity", "--tenant", "contoso", f)
    assert "5 new learners consumed a seat" in out and "available -2" in out
    status = cli.json("status", "--tenant", "contoso")
    assert (status["purchased"], status["consumed"], status["available"], status["overage"]) == (3, 5, -2, 2)

    report = cli("report", "consumption", "--tenant", "contoso", "--csv")
    lines = report.splitlines()
    assert lines[0] == "activity_id,user_id,first_name,last_name,first_content,first_access_at,duplicate_of"
    assert lines[1] == "scorm-1,e-1,John,Smith,What is Respect,2026-02-01T09:00:00Z,"
    assert "'=cmd,,Eve,,What is Respect,2026-02-07T09:00:00Z," in lines  # a formula is kept as text
    assert len(lines) == 6

    dups = cli.json("duplicates", "--tenant", "contoso")
    assert [(d["a"]["activity_id"], d["b"]["activity_id"], d["matched_on"]) for d in dups] == [
        ("ann-a", "ann-b", ["directory_user"]), ("scorm-1", "scorm-9", ["name"])]
    john = next(d["id"] for d in dups if d["a"]["activity_id"] == "scorm-1")
    ann = next(d["id"] for d in dups if d["a"]["activity_id"] == "ann-a")
    assert "confirmed" in cli("duplicates", "confirm", john)
    assert "nothing was merged" in cli("duplicates", "dismiss", ann)
    assert cli("duplicates", "--tenant", "contoso") == "no candidate duplicates\n"
    billing = cli.json("report", "consumption", "--tenant", "contoso")
    assert (billing["consumed"], billing["available"], billing["confirmed_duplicates"], billing["billable"],
            billing["billable_overage"]) == (5, -2, 1, 4, 1)
    assert {x["activity_id"]: x["duplicate_of"] for x in billing["learners"]}["scorm-9"] == "scorm-1"
    assert cli.json("report", "model", "--tenant", "contoso")["billing"]["period"]["days_remaining"] == 304
    text = cli("report", "consumption", "--tenant", "contoso")
    assert "purchased 3  consumed 5  available -2  overage 2" in text and "(duplicate of scorm-1)" in text

    err = cli("duplicates", "confirm", "dup-nope", code=65)
    assert "no candidate duplicate 'dup-nope'" in err
    err = cli("duplicates", code=65)
    assert "needs --tenant" in err


def test_a_bad_activity_file_changes_nothing(cli: Cli) -> None:
    cli.activate("first_access", 3, "--overage", "bill")
    f = cli.file("bad.csv", HEADER, [["s1", "", "", "", "", "c1", "", "2026-02-01"],
                                     ["s2", "", "", "", "", "", "", "x"]])
    err = cli("import", "activity", "--tenant", "contoso", f, code=65)
    assert "line 3: content_id is empty; occurred_at 'x' is not an ISO-8601 date or date-time" in err
    assert cli.json("status", "--tenant", "contoso")["consumed"] == 0
