"""One answer everywhere (SPEC §2): status, explain and the access endpoint agree, whatever the policy.

Each case was seen wrong on the old code (issue 13): a role pool holder reported unlicensed with
``consumed 0``, a refused user told "not enrolled", an expired learner told ``enrolled``, a UPN
answered "NOT licensed" for a seat holder. Through the real CLI and the real API app, on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from licsync import db
from licsync.catalogs.csv_import import HEADER
from licsync.config import load_settings
from licsync.seat_models import base
from licsync.seat_models.models import EnrollmentModel
from tests.seat_models.conftest import Cli, enrollment_row

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOW = "2026-03-02T12:00:00Z"


@pytest.fixture
def cli(tmp_path: Path, graph_env: Any, capsys: pytest.CaptureFixture[str], db_url: str) -> Cli:
    """The seat-model CLI fixture, on SQLite and on PostgreSQL."""
    return Cli(tmp_path, graph_env, capsys, database={"url": db_url}, api={"metrics_tenant_labels": "name"},
               roles={"teacher": ["elearn"], "observer": ["weclimb"], "leader": ["combined"]})


@pytest.fixture
def api(cli: Cli) -> Iterator[Any]:
    """``GET /access/{user}`` of the real app over the CLI's database, with a platform token."""
    from licsync.api import create_app

    token = cli("token", "create", "--tenant", "contoso", "--role", "platform").strip()
    settings = load_settings(cli.config)
    engine = db.get_engine(settings.database.url)
    client = TestClient(create_app(settings, engine, clock=lambda: datetime(2026, 3, 2, 12, tzinfo=UTC)),
                        raise_server_exceptions=False)

    def access(user: str) -> dict[str, Any]:
        r = client.get(f"/api/v1/tenants/contoso/access/{user}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()

    access.client = client  # type: ignore[attr-defined]
    yield access
    client.close()
    engine.dispose()


def test_role_pool_holders_are_licensed_and_counted(cli: Cli, api: Any) -> None:
    for uid in ("t1", "t2", "o1"):
        cli.directory.add_user(id=uid, displayName=uid.upper(), userPrincipalName=f"{uid}@contoso.example")
    cli.activate("role", 3, "--overage", "block", "--pools", "elearn=2,weclimb=1")
    cli("sync", "--tenant", "contoso")
    roles = cli.file("roles.csv", ("user_id", "role"), [["t1", "teacher"], ["o1", "observer"], ["t2", "observer"]])
    cli("import", "roles", "--tenant", "contoso", roles)

    status = cli.json("status", "--tenant", "contoso")
    assert (status["purchased"], status["consumed"], status["available"]) == (3, 2, 1)  # the sum of the pools
    held = cli.json("explain", "--tenant", "contoso", "t1")
    assert (held["holds_seat"], held["licensed"], held["reason"]) == (True, True, "seat_held")
    assert held["seat_reason"] == "role_needs_pool" and held["pools"] == ["elearn"]
    assert api("t1") == api("t1@contoso.example")
    assert api("t1")["licensed"] is True and api("t1")["reason"] == "seat_held"
    text = cli("explain", "--tenant", "contoso", "t1")
    assert "holds a seat" in text and "NOT licensed" not in text

    metrics = {f.name: {s.labels.get("tenant"): s.value for s in f.samples}
               for f in text_string_to_metric_families(api.client.get("/metrics").text)}
    assert (metrics["licsync_seats_purchased"]["contoso"], metrics["licsync_seats_consumed"]["contoso"]) == (3, 2)

    refused = cli.json("explain", "--tenant", "contoso", "t2")  # weclimb had one seat, o1 took it
    assert (refused["holds_seat"], refused["licensed"], refused["seat_reason"]) == (False, False, "pool_full")
    assert refused["pool"] == "weclimb" and refused["seat_reason_since"] is not None
    assert api("t2") == {**api("t2"), "licensed": False, "reason": "no_seat"}
    assert "pool_full" in cli("explain", "--tenant", "contoso", "t2")


def test_seat_limit_refusal_is_explained_with_the_place_in_line(cli: Cli, api: Any) -> None:
    for uid in ("u1", "u2", "u3", "u4"):
        cli.directory.add_user(id=uid, displayName=uid.upper(), userPrincipalName=f"{uid}@contoso.example")
    cli.activate("enrollment", 2, "--overage", "block")
    cli("sync", "--tenant", "contoso")
    e = cli.file("e.csv", HEADER, [enrollment_row(u, enrolled=f"2026-01-0{i}T09:00:00Z")
                                   for i, u in enumerate(("u1", "u2", "u3", "u4"), start=1)])
    assert cli.json("import", "enrollments", "--tenant", "contoso", e)["seats_refused"] == 2

    third = cli.json("explain", "--tenant", "contoso", "u4@contoso.example")  # a UPN is taken too
    assert third["user_id"] == "u4" and third["seat_reason"] == "seat_limit" and third["qualifies_now"] is True
    assert (third["waitlist_position"], third["waitlist_length"]) == (2, 2)
    assert third["seat_reason_since"] == NOW and "place 2 of 2" in third["seat_sentence"]
    text = cli("explain", "--tenant", "contoso", "u3")
    assert "seat_limit" in text and "place 1 of 2" in text
    assert api("u3")["licensed"] is False
    holder = cli.json("explain", "--tenant", "contoso", "u1@contoso.example")
    assert (holder["holds_seat"], holder["licensed"], holder["seat_reason"]) == (True, True, "enrolled")
    assert api("u1@contoso.example")["licensed"] is True


def test_expired_enrollments_and_tier_upgrades_answer_alike(cli: Cli) -> None:
    for uid in ("u1", "u2", "u3"):
        cli.directory.add_user(id=uid, displayName=uid.upper())
    cli.activate("live_enrollment", 2, "--overage", "tiered", "--tiers", "2,4,8")
    cli("sync", "--tenant", "contoso")
    e = cli.file("e.csv", HEADER, [enrollment_row("u1"), enrollment_row("u2", "c2"),
                                   enrollment_row("u3", "c2", expires="2026-03-20T00:00:00Z")])
    cli("import", "enrollments", "--tenant", "contoso", e)
    cli("sync", "--tenant", "contoso", now="2026-03-03T12:00:00Z")  # 24 h after the major notice: upgrade to 4
    status = cli.json("status", "--tenant", "contoso", now="2026-03-03T12:00:00Z")
    assert (status["purchased"], status["consumed"], status["available"], status["overage"]) == (4, 3, 1, 0)

    cli("sync", "--tenant", "contoso", now="2026-03-21T00:00:00Z")
    gone = cli.json("explain", "--tenant", "contoso", "u3", now="2026-03-21T00:00:00Z")
    assert (gone["holds_seat"], gone["seat_reason"], gone["qualifies_now"]) == (False, "all_enrollments_expired", False)
    assert gone["seat_reason_since"] == "2026-03-21T00:00:00Z"


def test_flow365_activations_hold_seats_from_activation_until_deactivation(cli: Cli) -> None:
    cli.activate("enrollment", 10)
    header = ("user_id", "display_name", "product", "activated_at", "deactivated_at")
    f = cli.file("a.csv", header, [["fl-1", "Line Worker", "flow365", "2026-02-01T08:00:00Z", ""],
                                   ["fl-2", "Other Worker", "flow365", "2026-02-01T08:00:00Z", ""]])
    out = cli.json("import", "activations", "--tenant", "contoso", f)
    assert (out["activated"], out["seats_taken"]) == (2, 2)
    explain = cli.json("explain", "--tenant", "contoso", "fl-1")
    assert (explain["holds_seat"], explain["licensed"], explain["seat_reason"]) == (True, True, "activated")
    f2 = cli.file("b.csv", header, [["fl-1", "Line Worker", "flow365", "2026-02-01T08:00:00Z", ""]])
    out = cli.json("import", "activations", "--tenant", "contoso", f2, "--replace")
    assert (out["deactivated"], out["seats_freed"]) == (1, 1)
    assert cli.json("explain", "--tenant", "contoso", "fl-2")["seat_reason"] == "deactivated"
    bad = cli.file("c.csv", header, [["fl-3", "X", "flow365", "tomorrow", ""]])
    err = cli("import", "activations", "--tenant", "contoso", bad, code=65)
    assert "line 2" in err and "activated_at" in err
    assert cli.json("status", "--tenant", "contoso")["consumed"] == 1  # the bad file changed nothing


class EveryoneModel(EnrollmentModel):
    """A toy fifth policy: the enrollment rules, and every seat counted twice as purchased."""

    policy = "toy_double"

    def limits(self, session: Any, tenant: str, terms: Any) -> Any:
        lim = super().limits(session, tenant, terms)
        return type(lim)(seats=lim.seats * 2, overage=lim.overage)


def test_a_fifth_policy_is_one_registered_model(cli: Cli) -> None:
    base.register(EveryoneModel())
    try:
        cli.directory.add_user(id="u1", displayName="U1")
        assert "toy_double" in cli.activate("toy_double", 3)
        cli("sync", "--tenant", "contoso")
        cli("import", "enrollments", "--tenant", "contoso", cli.file("e.csv", HEADER, [enrollment_row("u1")]))
        status = cli.json("status", "--tenant", "contoso")
        assert (status["purchased"], status["consumed"], status["model"]["model"]) == (6, 1, "toy_double")
        assert cli.json("explain", "--tenant", "contoso", "u1")["licensed"] is True
    finally:
        base.unregister("toy_double")


def test_dry_run_sentences_are_the_models_own(cli: Cli) -> None:
    cli.directory.add_user(id="u1", displayName="U1")
    cli.activate("live_enrollment", 5)
    cli("sync", "--tenant", "contoso")
    e = cli.file("e.csv", HEADER, [enrollment_row("u1"), enrollment_row("u2", "c2")])  # u2: not in Entra yet
    cli("import", "enrollments", "--tenant", "contoso", e)
    cli.directory.add_user(id="u2", displayName="U2")
    out = cli("sync", "--tenant", "contoso", "--dry-run")
    assert "would: u2 takes a seat: the user has at least one live (not expired) enrollment" in out
    rows = cli.json("sync", "--tenant", "contoso", "--dry-run")["changes"]
    assert rows == [{"holder": "u2", "action": "take", "reason": "enrollment_live",
                     "sentence": "u2 takes a seat: the user has at least one live (not expired) enrollment"}]
