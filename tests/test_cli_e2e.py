"""End to end through the CLI, as an IT admin runs it: config file, Graph emulator, database.

check → apply → check: a second identical sync changes nothing. The whole subscription story
runs on --now: seats fill up, grace starts, 15 days pass, the seats beyond the maximum are
unlicensed, seats are freed, grace ends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from licsync.cli import main
from licsync.subscriptions import keys
from tests.conftest import GraphEnv, write_config

STATUS_KEYS = {"tenant", "subscription", "purchased", "consumed", "available", "overage", "grace", "catalogs"}
SUB_KEYS = {"id", "seats", "starts_at", "ends_at", "state"}
GRACE_KEYS = {"state", "reason", "started_at", "ends_at"}


class Cli:
    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config, self.capsys = config, capsys

    def __call__(self, *args: str, now: str | None = None, code: int = 0) -> str:
        argv = ["--config", str(self.config)] + (["--now", now] if now else []) + list(args)
        self.capsys.readouterr()
        try:
            main(argv)
            rc = 0
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        assert rc == code, f"licsync {' '.join(args)} exited {rc}: {err}"
        return out if code == 0 else err

    def json(self, *args: str, now: str | None = None) -> Any:
        return json.loads(self(*args, "--json", now=now))


@pytest.fixture
def setup(graph_env: GraphEnv, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    private, public = keys.generate_keypair()
    (tmp_path / "vendor.key").write_bytes(private)
    config = write_config(
        tmp_path / "licsync.toml",
        {
            "database": {"url": db_url},
            "vendor": {"public_key": public},
            "tenant": [graph_env.server.tenant_config("contoso", tenant=graph_env.tenant)],
            "seats": {"grace_days": 14, "mass_free_threshold": 500, "mass_free_fraction": 1.0},
        },
    )
    ids = graph_env.tenant.directory.add_users(12, seed=3)
    csv = tmp_path / "enrollments.csv"
    lines = [
        "catalog_id,catalog_name,course_id,course_title,course_status,user_id,user_principal_name,role,"
        "enrolled_at,expires_at"
    ]
    for i, uid in enumerate(ids[:10]):
        cat, course = ("cat-a", "a1") if i % 2 == 0 else ("cat-b", "b1")
        lines.append(
            f"{cat},Catalog {cat},{course},Course {course},published,{uid},u{i}@x,learner,"
            f"2026-01-0{1 + i % 9}T00:00:00Z,"
        )
    lines.append(f"cat-a,Catalog cat-a,a2,Course a2,unpublished,{ids[0]},u0@x,learner,2026-01-01T00:00:00Z,")
    lines.append(f"cat-b,Catalog cat-b,b1,Course b1,published,{ids[11]},u11@x,admin,2026-01-01T00:00:00Z,")
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"cli": Cli(config, capsys), "ids": ids, "csv": csv, "dir": tmp_path, "env": graph_env}


def _issue(setup: dict[str, Any], seats: int, ends: str, now: str) -> str:
    return setup["cli"](
        "subscription",
        "issue",
        "--private-key",
        str(setup["dir"] / "vendor.key"),
        "--id",
        "SUB-1",
        "--customer",
        "Contoso",
        "--seats",
        str(seats),
        "--starts",
        "2026-01-01",
        "--ends",
        ends,
        now=now,
    ).strip()


def test_check_apply_check_and_the_status_contract(setup: dict[str, Any]) -> None:
    cli, ids = setup["cli"], setup["ids"]
    assert "upgraded" in cli("db", "upgrade") or "up to date" in cli("db", "upgrade")
    assert "up to date" in cli("db", "upgrade")  # idempotent
    key = _issue(setup, 20, "2026-12-31", "2026-11-01T00:00:00Z")
    cli("activate", "--tenant", "contoso", key, now="2026-11-01T00:00:00Z")
    dry = cli.json("sync", "--tenant", "contoso", "--dry-run")
    assert dry["dry_run"] and dry["created"] == 12
    assert cli.json("sync", "--tenant", "contoso", "--dry-run")["created"] == 12  # dry run changed nothing
    first = cli.json("sync", "--tenant", "contoso")
    assert first["kind"] == "full" and first["users_seen"] == 12
    out = cli("import", "enrollments", "--tenant", "contoso", str(setup["csv"]))
    assert "seats +10" in out
    again = cli.json("sync", "--tenant", "contoso", "--full")
    assert again["seats_taken"] == 0 and again["seats_freed"] == 0  # check → apply → check
    st = cli.json("status", "--tenant", "contoso")
    assert set(st) >= STATUS_KEYS and set(st["subscription"]) >= SUB_KEYS and set(st["grace"]) >= GRACE_KEYS
    assert st["tenant"] == "contoso"
    assert st["subscription"] | {} == st["subscription"] and st["subscription"]["id"] == "SUB-1"
    assert st["subscription"]["state"] == "active" and st["subscription"]["ends_at"] == "2027-01-01T00:00:00Z"
    assert (st["purchased"], st["consumed"], st["available"], st["overage"]) == (20, 10, 10, 0)
    assert st["grace"] == st["grace"] | {"state": "none", "reason": None, "started_at": None, "ends_at": None}
    cats = {c["id"]: c for c in st["catalogs"]}
    assert set(cats) == {"cat-a", "cat-b"}
    assert cats["cat-a"] == {"id": "cat-a", "name": "Catalog cat-a", "consumed": 5}
    assert cats["cat-b"]["consumed"] == 5
    assert cli.json("status", "--tenant", "contoso", "--catalog", "cat-a") == cats["cat-a"]
    # explain: the admin-only user holds no seat; an enrolled user does.
    ex = cli.json("explain", "--tenant", "contoso", ids[11])
    assert ex["holds_seat"] is False and ex["licensed"] is False and ex["reason"] == "no_seat"
    ex = cli.json("explain", "--tenant", "contoso", ids[0])
    assert set(ex) >= {"user_id", "holds_seat", "licensed", "reason", "since"}
    assert ex["holds_seat"] and ex["licensed"] and ex["reason"] == "seat_held" and ex["since"]
    # disable / delete in the directory: the next sync frees, with reasons; restoring takes back.
    d = setup["env"].tenant.directory
    d.disable(ids[0])
    d.soft_delete(ids[1])
    d.hard_delete(ids[2])
    r = cli.json("sync", "--tenant", "contoso")
    assert sorted((c["holder"], c["reason"]) for c in r["changes"]) == sorted(
        [(ids[0], "account_disabled"), (ids[1], "account_soft_deleted"), (ids[2], "account_deleted")]
    )
    d.enable(ids[0])
    d.restore(ids[1])
    r = cli.json("sync", "--tenant", "contoso")
    assert sorted((c["holder"], c["reason"]) for c in r["changes"]) == sorted(
        [(ids[0], "restored"), (ids[1], "restored")]
    )
    assert cli.json("status", "--tenant", "contoso")["consumed"] == 9
    # remove-learner frees the seat of a user whose only catalog it was.
    cli("catalog", "remove-learner", "--tenant", "contoso", "--catalog", "cat-b", ids[3])
    ex = cli.json("explain", "--tenant", "contoso", ids[3])
    assert ex["holds_seat"] is False and ex["freed_reason"] == "removed_from_learner_list"


def test_the_whole_grace_story_through_the_cli(setup: dict[str, Any]) -> None:
    cli, ids = setup["cli"], setup["ids"]
    cli("db", "upgrade")
    day0 = "2026-03-01T09:00:00Z"
    key = _issue(setup, 8, "2026-12-31", day0)
    cli("activate", "--tenant", "contoso", key, now=day0)
    cli("sync", "--tenant", "contoso", now=day0)
    cli("import", "enrollments", "--tenant", "contoso", str(setup["csv"]), now=day0)  # 10 seats for 8 purchased
    st = cli.json("status", "--tenant", "contoso", now=day0)
    assert (st["consumed"], st["available"], st["overage"]) == (10, -2, 2)
    g = st["grace"]
    assert (g["state"], g["reason"], g["started_at"], g["ends_at"]) == (
        "active",
        "seat_limit",
        "2026-03-01T09:00:00Z",
        "2026-03-15T09:00:00Z",
    )
    assert cli.json("explain", "--tenant", "contoso", ids[9], now=day0)["reason"] == "grace_period"
    for day, state in (
        ("2026-03-14T09:00:00Z", "active"),
        ("2026-03-15T09:00:00Z", "enforced"),
        ("2026-03-16T09:00:00Z", "enforced"),
    ):
        cli("sync", "--tenant", "contoso", now=day)
        assert cli.json("status", "--tenant", "contoso", now=day)["grace"]["state"] == state
    day15 = "2026-03-16T09:00:00Z"
    licensed = {u: cli.json("explain", "--tenant", "contoso", u, now=day15) for u in ids[:10]}
    unlicensed = sorted(u for u, e in licensed.items() if not e["licensed"])
    assert len(unlicensed) == 2 and all(licensed[u]["reason"] == "beyond_seat_limit" for u in unlicensed)
    # They are the two acquired last (same instant: highest seat ids), and the order is stable.
    ranks = sorted(licensed.values(), key=lambda e: e["seat_rank"])
    assert [e["user_id"] for e in ranks[-2:]] == [e["user_id"] for e in ranks if not e["licensed"]]
    # Free seats below the maximum (consumed ≥ seats still counts as full): grace ends, and
    # everybody with a seat is licensed again.
    d = setup["env"].tenant.directory
    for uid in ids[:3]:
        d.disable(uid)
    cli("sync", "--tenant", "contoso", now=day15)
    st = cli.json("status", "--tenant", "contoso", now=day15)
    assert st["consumed"] == 7 and st["grace"]["state"] == "none"
    assert all(cli.json("explain", "--tenant", "contoso", u, now=day15)["licensed"] for u in ids[3:10])


def test_expiry_grace_and_renewal(setup: dict[str, Any]) -> None:
    cli, ids = setup["cli"], setup["ids"]
    cli("db", "upgrade")
    t0 = "2026-06-01T00:00:00Z"
    cli("activate", "--tenant", "contoso", _issue(setup, 50, "2026-06-30", t0), now=t0)
    cli("sync", "--tenant", "contoso", now=t0)
    cli("import", "enrollments", "--tenant", "contoso", str(setup["csv"]), now=t0)
    st = cli.json("status", "--tenant", "contoso", now="2026-07-01T00:00:00Z")
    assert st["subscription"]["state"] == "expired"
    assert (st["grace"]["state"], st["grace"]["reason"], st["grace"]["started_at"]) == (
        "active",
        "expired",
        "2026-07-01T00:00:00Z",
    )
    after = "2026-07-15T00:00:00Z"
    assert cli.json("status", "--tenant", "contoso", now=after)["grace"]["state"] == "enforced"
    ex = cli.json("explain", "--tenant", "contoso", ids[4], now=after)
    assert ex["holds_seat"] and not ex["licensed"] and ex["reason"] == "subscription_expired"
    renewed = _issue(setup, 50, "2027-06-30", after)
    cli("activate", "--tenant", "contoso", renewed, now=after)
    st = cli.json("status", "--tenant", "contoso", now=after)
    assert st["subscription"]["state"] == "active" and st["grace"]["state"] == "none"
    assert cli.json("explain", "--tenant", "contoso", ids[4], now=after)["licensed"]
    # The older key never replaces the newer one.
    err = cli("activate", "--tenant", "contoso", _issue(setup, 99, "2030-01-01", t0), now=after, code=65)
    assert "older" in err


def test_cli_errors_are_one_clear_line(setup: dict[str, Any]) -> None:
    cli = setup["cli"]
    err = cli("status", "--tenant", "contoso", code=78)
    assert "licsync db upgrade" in err and err.count("\n") == 1
    cli("db", "upgrade")
    err = cli("status", "--tenant", "nope", code=78)
    assert "unknown tenant 'nope'" in err
    err = cli("activate", "--tenant", "contoso", "LSK1.garbage", code=65)
    assert err.startswith("licsync: error:") and "Traceback" not in err
    err = cli("approve", "hold-missing", code=65)
    assert "no pending hold" in err
    now = datetime.now(UTC)
    assert now.year >= 2026


def test_incremental_catalog_counts_equal_a_full_recount(setup: dict[str, Any], db_url: str) -> None:
    """Per-catalog figures are kept incrementally; after a busy history they equal a full recount."""
    from sqlmodel import Session

    from licsync import db, ledger

    cli, ids = setup["cli"], setup["ids"]
    cli("db", "upgrade")
    cli("sync", "--tenant", "contoso")
    cli("import", "enrollments", "--tenant", "contoso", str(setup["csv"]))
    d = setup["env"].tenant.directory
    d.disable(ids[0])
    d.hard_delete(ids[4])
    cli("sync", "--tenant", "contoso")
    cli("catalog", "remove-learner", "--tenant", "contoso", "--catalog", "cat-b", ids[1])
    d.enable(ids[0])
    cli("sync", "--tenant", "contoso")
    engine = db.get_engine(db_url)
    with Session(engine) as s:
        kept = ledger.catalog_consumed(s, "contoso")
        ledger.refresh_catalogs(s, "contoso", None)
        recount = ledger.catalog_consumed(s, "contoso")
        s.rollback()
    assert kept == recount == {"cat-a": 4, "cat-b": 4}


def test_block_overage_refuses_seats_beyond_the_maximum_in_enrolment_order(setup: dict[str, Any]) -> None:
    cli, ids = setup["cli"], setup["ids"]
    cli("db", "upgrade")
    now = "2026-03-01T00:00:00Z"
    key = cli(
        "subscription",
        "issue",
        "--private-key",
        str(setup["dir"] / "vendor.key"),
        "--id",
        "SUB-B",
        "--customer",
        "Contoso",
        "--seats",
        "5",
        "--starts",
        "2026-01-01",
        "--ends",
        "2026-12-31",
        "--overage",
        "block",
        now=now,
    ).strip()
    cli("activate", "--tenant", "contoso", key, now=now)
    cli("sync", "--tenant", "contoso", now=now)
    out = cli("import", "enrollments", "--tenant", "contoso", str(setup["csv"]), now=now)
    assert "seats +5" in out and "refused 5" in out
    st = cli.json("status", "--tenant", "contoso", now=now)
    assert (st["consumed"], st["available"], st["grace"]["state"]) == (5, 0, "none")  # block never runs grace
    # The five enrolled first hold the seats (enrolled on Jan 1, 1, 2, 3, 4).
    holders = {u for u in ids[:10] if cli.json("explain", "--tenant", "contoso", u, now=now)["holds_seat"]}
    assert holders == {ids[0], ids[9], ids[1], ids[2], ids[3]}
    # A freed seat goes to the next in line at the next cycle.
    setup["env"].tenant.directory.disable(ids[2])
    r = cli.json("sync", "--tenant", "contoso", now=now)
    assert [(c["holder"], c["action"]) for c in r["changes"] if c["action"] != "refuse"] == [
        (ids[2], "free"),
        (ids[4], "take"),
    ] or {c["holder"] for c in r["changes"] if c["action"] == "take"}


def test_every_enrollment_rule_end_to_end(setup: dict[str, Any]) -> None:
    """The counting rules that need catalog data, through the CLI against the Graph emulator."""
    cli, ids, tmp = setup["cli"], setup["ids"], setup["dir"]
    cli("db", "upgrade")
    cli("sync", "--tenant", "contoso")
    head = (
        "catalog_id,catalog_name,course_id,course_title,course_status,user_id,user_principal_name,role,"
        "enrolled_at,expires_at"
    )

    def rows(deleted: str = "published", with_u3: bool = True) -> str:
        out = [
            head,
            f"k,K,unpub,Draft,unpublished,{ids[0]},u0@x,learner,2026-01-01T00:00:00Z,",  # unpublished counts
            f"k,K,pub,Live,published,{ids[1]},u1@x,admin,2026-01-01T00:00:00Z,",  # enrolled admin counts
            f"k,K,pub,Live,published,{ids[1]},u1@x,learner,2026-01-01T00:00:00Z,",
            f"k,K,pub,Live,published,{ids[5]},u5@x,admin,2026-01-01T00:00:00Z,",  # admin only: no seat
            f"k,K,gone,Old,{deleted},{ids[2]},u2@x,learner,2026-01-01T00:00:00Z,",
        ]
        if with_u3:
            out.append(f"k,K,pub,Live,published,{ids[3]},u3@x,learner,2026-01-01T00:00:00Z,")
        return "\n".join(out) + "\n"

    first = tmp / "first.csv"
    first.write_text(rows(), encoding="utf-8")
    cli("import", "enrollments", "--tenant", "contoso", str(first))
    seat = {u: cli.json("explain", "--tenant", "contoso", u)["holds_seat"] for u in ids[:6]}
    assert seat == {ids[0]: True, ids[1]: True, ids[2]: True, ids[3]: True, ids[4]: False, ids[5]: False}
    second = tmp / "second.csv"
    second.write_text(rows(deleted="deleted", with_u3=False), encoding="utf-8")
    cli("import", "enrollments", "--tenant", "contoso", str(second), "--replace")
    assert cli.json("explain", "--tenant", "contoso", ids[2])["freed_reason"] == "course_deleted"
    assert cli.json("explain", "--tenant", "contoso", ids[3])["freed_reason"] == "last_enrollment_removed"
    assert cli.json("status", "--tenant", "contoso")["consumed"] == 2
    # Running the same import again changes nothing; a sync afterwards neither.
    assert "seats +0 −0" in cli("import", "enrollments", "--tenant", "contoso", str(second), "--replace")
    r = cli.json("sync", "--tenant", "contoso", "--full")
    assert r["seats_taken"] == r["seats_freed"] == 0
