"""``role`` end to end through the command line, against the Graph emulator (seed 002)."""

from __future__ import annotations

from tests.seat_models.conftest import Cli, at


def test_roles_take_pool_seats_refusals_are_listed_and_inactivity_comes_from_graph(cli: Cli) -> None:
    for uid in ("t1", "t2", "t3", "o1", "l1"):
        cli.directory.add_user(id=uid, displayName=uid.upper())
    cli.directory.set_sign_in("t1", at("2026-03-01T08:00:00Z"))
    cli.directory.set_sign_in("t2", at("2025-10-01T08:00:00Z"))  # 152 days before now
    assert "role" in cli.activate("role", 4, "--overage", "block", "--pools", "elearn=2,weclimb=1,combined=1",
                                  now="2025-11-30T00:00:00Z")
    roles = cli.file("roles.csv", ("user_id", "role"), [["t1", "teacher"], ["t2", "teacher"], ["t3", "teacher"],
                                                         ["o1", "observer"], ["l1", "leader"], ["l1", "student"]])
    out = cli("import", "roles", "--tenant", "contoso", roles, now="2025-12-01T00:00:00Z")
    assert "roles +5 −0, pool seats +4 −0, 1 refused; role(s) that need no pool (not in [roles]): student" in out
    assert "refused: role teacher of t3 refused: pool elearn is full (pool_full)" in out

    assert cli.json("report", "pools", "--tenant", "contoso") == [
        {"pool": "combined", "total": 1, "assigned": 1, "available": 0, "usage_pct": 100.0, "inactive": None},
        {"pool": "elearn", "total": 2, "assigned": 2, "available": 0, "usage_pct": 100.0, "inactive": None},
        {"pool": "weclimb", "total": 1, "assigned": 1, "available": 0, "usage_pct": 100.0, "inactive": None},
    ]
    # A separate /users?$select=signInActivity read: t2 last signed in 152 days ago, o1 and l1 never.
    out = cli("report", "pools", "--tenant", "contoso", "--refresh-sign-ins")
    assert "inactive: t2 (elearn), last sign-in 2025-10-01T08:00:00Z" in out
    assert "inactive: o1 (weclimb), last sign-in never" in out and "inactive: t1" not in out
    pools = {p["pool"]: p["inactive"] for p in cli.json("report", "pools", "--tenant", "contoso")}
    assert pools == {"combined": 1, "elearn": 1, "weclimb": 1}

    # --replace: the file is the whole truth; t1 loses teacher and its seat goes to t3.
    roles = cli.file("roles2.csv", ("user_id", "role"), [["t2", "teacher"], ["t3", "teacher"], ["o1", "observer"],
                                                          ["l1", "leader"], ["l1", "student"]])
    summary = cli.json("import", "roles", "--tenant", "contoso", roles, "--replace")
    assert (summary["removed"], summary["assigned"], summary["refused"]) == (1, 1, [])
    again = cli.json("import", "roles", "--tenant", "contoso", roles, "--replace")
    assert (again["removed"], again["assigned"], again["seats_taken"]) == (0, 0, 0)
    model = cli.json("report", "model", "--tenant", "contoso")
    assert model["model"] == "role" and model["inactive_assignments"] == 3
    assert [p["assigned"] for p in model["pools"]] == [1, 2, 1]
    assert "pool elearn, total 2, assigned 2, available 0" in cli("report", "model", "--tenant", "contoso")


def test_roles_are_refused_for_a_tenant_of_another_model(cli: Cli) -> None:
    cli.activate("live_enrollment", 4, "--overage", "tiered")
    roles = cli.file("roles.csv", ("user_id", "role"), [["t1", "teacher"]])
    err = cli("import", "roles", "--tenant", "contoso", roles, code=65)
    assert "counts seats by live_enrollment, not role" in err
