"""``live_enrollment`` end to end through the command line, against the Graph emulator (seed 001)."""

from __future__ import annotations

from tests.seat_models.conftest import Cli, enrollment_row

HEADER = ("catalog_id", "catalog_name", "course_id", "course_title", "course_status", "user_id",
          "user_principal_name", "role", "enrolled_at", "expires_at")
ORGS = ("org_id", "org_name", "parent_id", "user_limit", "catalog_id")


def test_live_enrollments_reuses_tiers_upgrade_orgs_and_the_sync_csv(cli: Cli) -> None:
    for uid in ("u1", "u2", "u3", "u4"):
        cli.directory.add_user(id=uid, displayName=uid.upper(), mail=f"{uid}@contoso.example")
    assert "live_enrollment" in cli.activate("live_enrollment", 2, "--overage", "tiered", "--tiers", "2,4,8",
                                             "--reuse-limit", "1")
    cli("sync", "--tenant", "contoso")
    e = cli.file("e.csv", HEADER, [enrollment_row("u1", catalog="sales"), enrollment_row("u2", "c2", catalog="emea"),
                                   enrollment_row("u3", "c2", catalog="emea", expires="2026-03-20T00:00:00Z"),
                                   enrollment_row("u4", "c2", catalog="emea", expires="2026-02-01T00:00:00Z")])
    summary = cli.json("import", "enrollments", "--tenant", "contoso", e)
    assert summary["seats_taken"] == 3  # u4's only enrollment has expired: not an active user
    status = cli.json("status", "--tenant", "contoso")
    assert (status["purchased"], status["consumed"], status["available"]) == (2, 3, -1)

    model = cli.json("report", "model", "--tenant", "contoso")
    assert model["model"] == "live_enrollment" and model["tier"]["state"] == "major"  # 150 %
    assert model["upgrade"]["pending"]["to_seats"] == 4
    # three users on two seats with nobody leaving: an overage of one, not a reuse (SPEC §1)
    assert model["reuse"] == {"reuse_limit": 1, "unique_users": 3, "reuses": 0, "allowance": 2, "left": 2,
                              "beyond_limit": 0, "exceeded": False}
    # 24 hours after the major notice the next sync upgrades to the next tier, pro rata.
    cli("sync", "--tenant", "contoso", now="2026-03-03T12:00:00Z")
    model = cli.json("report", "model", "--tenant", "contoso", now="2026-03-03T12:00:00Z")
    up = model["upgrade"]
    assert (up["key_seats"], up["effective_seats"], up["last"]["from_seats"], up["last"]["to_seats"]) == (2, 4, 2, 4)
    assert up["last"]["effective_at"] == "2026-03-03T12:00:00Z" and model["tier"]["state"] == "none"
    text = cli("report", "model", "--tenant", "contoso", now="2026-03-03T12:00:00Z")
    assert "seat model live_enrollment" in text and "effective_seats 4" in text and "state none" in text

    # Organisations: the report rolls children up and exports CSV with the seed's columns.
    orgs = cli.file("orgs.csv", ORGS, [["acme", "Acme", "", "4", ""], ["sales", "Sales", "acme", "1", "sales"],
                                       ["emea", "EMEA", "acme", "2", "emea"]])
    assert "imported 3 organisation(s)" in cli("import", "orgs", "--tenant", "contoso", orgs)
    assert cli("report", "orgs", "--tenant", "contoso", "--csv") == (
        "name,user_limit,used,remaining,percentage_used\r\n"
        "Acme,4,3,1,75.0\r\nEMEA,2,2,0,100.0\r\nSales,1,1,0,100.0\r\n")
    text = cli("report", "orgs", "--tenant", "contoso")
    assert text.splitlines()[1] == "  EMEA: limit 2, used 2, remaining 0, 100.0%"

    # u3's enrollment expires: the seat is freed at the next sync, the enrollment (records) stays.
    cli("sync", "--tenant", "contoso", now="2026-03-21T00:00:00Z")
    assert cli.json("status", "--tenant", "contoso", now="2026-03-21T00:00:00Z")["consumed"] == 2
    explain = cli.json("explain", "--tenant", "contoso", "u3", now="2026-03-21T00:00:00Z")
    assert explain["holds_seat"] is False and explain["freed_reason"] == "all_enrollments_expired"

    # The sync CSV: export, delete a user, preview, apply, and the check after it finds nothing to do.
    users = cli("report", "users", "--tenant", "contoso", now="2026-03-21T00:00:00Z")
    assert users.splitlines()[0] == "user_id,user_principal_name" and len(users.splitlines()) == 5
    kept = cli.file("users.csv", ("user_id", "user_principal_name"),
                    [line.split(",") for line in users.splitlines()[1:] if not line.startswith("u2,")])
    preview = cli("import", "users", "--tenant", "contoso", kept, now="2026-03-21T00:00:00Z")
    assert "would delete: u2" in preview and "nothing changed" in preview
    done = cli.json("import", "users", "--tenant", "contoso", kept, "--sync", now="2026-03-21T00:00:00Z")
    assert (done["deleted_users"], done["seats_freed"], done["hold_id"]) == (["u2"], 1, None)
    again = cli.json("import", "users", "--tenant", "contoso", kept, now="2026-03-21T00:00:00Z")
    assert again["deleted"] == 0
    assert cli.json("status", "--tenant", "contoso", now="2026-03-21T00:00:00Z")["consumed"] == 1


def test_bad_orgs_file_is_refused_with_line_numbers(cli: Cli) -> None:
    cli.activate("live_enrollment", 2, "--overage", "tiered")
    bad = cli.file("orgs.csv", ORGS, [["a", "A", "zz", "1", ""], ["b", "B", "", "many", ""]])
    err = cli("import", "orgs", "--tenant", "contoso", bad, code=65)
    assert "line 2: parent_id 'zz' is not an org_id of the file" in err or "line 3: user_limit" in err
