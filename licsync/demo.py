"""``licsync demo``: the whole product on the embedded defaults, with nothing to set up.

It starts the built-in Microsoft Graph emulator (HTTPS, its own CA) with a synthetic tenant,
activates a signed demo subscription, runs a full sync, imports course-catalog enrollments from a
CSV, lets the directory churn (accounts disabled and deleted), runs a delta sync that frees their
seats, prints the seat status, and serves the dashboard. Every step is the real code path: the
real msal and msgraph-sdk talk to the emulator, and SQLite holds the state in ``--workdir``.
"""

from __future__ import annotations

import asyncio
import csv
import random
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer
import uvicorn

from licsync import db
from licsync.api import create_app
from licsync.catalogs.csv_import import HEADER
from licsync.cli.render import print_status
from licsync.config import Settings
from licsync.errors import TransientError
from licsync.graph.emulator import EmulatorServer
from licsync.graph.emulator_state import Directory
from licsync.service import import_enrollments, sync_once
from licsync.status import tenant_status
from licsync.subscriptions import keys, registry, terms
from licsync.tokens import create_token

TENANT = "contoso"
CATALOGS = [
    (
        "sales-academy",
        "Sales Academy",
        [
            ("s-101", "Negotiation basics", "published"),
            ("s-102", "Key accounts", "published"),
            ("s-103", "Pricing (draft)", "unpublished"),
        ],
    ),
    (
        "compliance",
        "Compliance",
        [
            ("c-201", "Data protection", "published"),
            ("c-202", "Anti-bribery", "published"),
            ("c-203", "Old code of conduct", "deleted"),
        ],
    ),
    ("onboarding", "Onboarding", [("o-301", "Welcome", "published"), ("o-302", "Tools and systems", "published")]),
]


@dataclass
class DemoRun:
    settings: Settings
    workdir: Path
    token: str | None = None


def _say(text: str) -> None:
    typer.secho(text, fg=typer.colors.CYAN, bold=True)


def write_enrollments(path: Path, user_ids: list[str], upns: dict[str, str], now: datetime, seed: int = 7) -> int:
    """A realistic catalog export: most users in one to three courses, a few admins, one deleted course."""
    rng = random.Random(seed)
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        courses = [(cid, cname, co, title, st) for cid, cname, cos in CATALOGS for co, title, st in cos]
        for i, uid in enumerate(user_ids):
            if rng.random() < 0.35:
                continue
            for cid, cname, co, title, st in rng.sample(courses, rng.randint(1, 3)):
                when = (now - timedelta(days=rng.randint(1, 300))).isoformat().replace("+00:00", "Z")
                w.writerow([cid, cname, co, title, st, uid, upns[uid], "learner", when, ""])
                rows += 1
            if i % 250 == 0:  # catalog admins: an admin assignment is not an enrollment
                cid, cname, co, title, st = rng.choice(courses)
                w.writerow([cid, cname, co, title, st, uid, upns[uid], "admin", now.isoformat(), ""])
                rows += 1
    return rows


def port_free(host: str, port: int) -> bool:
    """Whether the dashboard could listen there (bound as uvicorn binds it, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_port(host: str, port: int) -> None:
    """Refuse a busy port before anything starts (not after the login link is printed)."""
    if port_free(host, port):
        return
    spare = next((p for p in range(port + 1, port + 50) if p < 65536 and port_free(host, p)), None)
    hint = f"e.g. licsync demo --port {spare}" if spare else "licsync demo --port PORT"
    raise TransientError(f"port {port} on {host} is already in use (another program, or a demo still running); "
                         f"choose another: {hint} (or --no-serve)")


def _listed(changes: Any, verb: str, shown: int = 5) -> None:
    """The first few changes, then how many more: never five lines that look like the whole list."""
    for change in changes[:shown]:
        typer.echo(f"   · {verb}: {change.sentence}")
    if len(changes) > shown:
        typer.echo(f"   · … and {len(changes) - shown:,} more {verb}")


def _grace_note(status: dict[str, Any], seats: int) -> None:
    grace = status["grace"]
    if grace["state"] == "none":
        return
    typer.echo(f"   {status['consumed']:,} learners hold seats for {seats:,} purchased: the demo's key is a little "
               f"short on purpose, so seat-limit grace starts ({grace['state']}, ends {grace['ends_at']}).")
    typer.echo("   Everyone keeps access during grace; freeing seats or a bigger key ends it "
               "(README: 'How seats are counted').")


def run_demo(workdir: Path, users: int, serve: bool, port: int, now: datetime) -> None:

    if serve:
        check_port("127.0.0.1", port)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    _say(f"licsync demo — a synthetic tenant of {users:,} users; state in {workdir}/")

    directory = Directory()
    ids = directory.add_users(users, seed=42, disabled_fraction=0.03)
    rng = random.Random(1)
    deleted_early = rng.sample(ids, max(1, users // 200))
    for uid in deleted_early:
        directory.soft_delete(uid)  # deleted before licsync ever looked: restorable, in deletedItems
    with EmulatorServer(directory, workdir=workdir / "graph-emulator") as graph:
        private_pem, public_b64 = keys.generate_keypair()
        settings = Settings.model_validate(
            {
                "database": {"url": f"sqlite:///{workdir}/licsync.db"},
                "vendor": {"public_key": public_b64},
                "tenant": [graph.tenant_config(TENANT, admins=["it-admin@contoso.example"])],
                "seats": {"mass_free_threshold": 500, "mass_free_fraction": 0.10},
                "api": {"listen": f"127.0.0.1:{port}"},
            }
        )
        tenant = settings.get_tenant(TENANT)
        engine = db.get_engine(settings.database.url)
        db.upgrade(engine)

        _say("1. Activate a signed subscription key (Ed25519, verified with [vendor] public_key)")
        seats = max(10, int(users * 0.595))  # a little short: the import reaches the maximum, grace starts
        key = keys.issue(
            private_pem,
            terms.Terms(
                id="SUB-DEMO-001",
                customer="Contoso Ltd",
                seats=seats,
                starts_at=now - timedelta(days=200),
                ends_at=now + timedelta(days=165),
                issued_at=now,
            ),
        )
        with db.session_scope(engine) as s:
            typer.echo("   " + registry.activate(s, TENANT, key, public_b64, now, actor="demo").sentence)

        _say("2. Full sync from Microsoft Graph (msal + msgraph-sdk against the emulator)")
        r = asyncio.run(sync_once(settings, tenant, engine, now=now, full=True, show_progress=True))
        typer.echo("   " + r.line())

        _say("3. Import course-catalog enrollments (CSV) — seats are taken at once")
        csv_path = workdir / "enrollments.csv"
        upns = {u["id"]: u["userPrincipalName"] for u in directory.active_users()}
        upns.update({u["id"]: u["userPrincipalName"] for u, _ in directory.soft_deleted()})
        write_enrollments(csv_path, ids, upns, now)
        with db.session_scope(engine) as s:
            result = import_enrollments(s, settings, TENANT, csv_path, replace=False, now=now, actor="demo")
        typer.echo("   " + result.line())
        with db.session_scope(engine) as s:
            _grace_note(tenant_status(s, TENANT, now), seats)

        _say("4. The directory changes: accounts disabled, deleted, restored")
        active = [u["id"] for u in directory.active_users() if u["accountEnabled"]]
        picks = rng.sample(active, 45)
        for uid in picks[:20]:
            directory.disable(uid)
        for uid in picks[20:35]:
            directory.soft_delete(uid)
        for uid in picks[35:45]:
            directory.hard_delete(uid)
        restored = deleted_early[: max(1, len(deleted_early) // 2)]
        for uid in restored:  # back from deletedItems: their enrollments count again
            directory.restore(uid)
        typer.echo(f"   20 accounts disabled, 15 soft-deleted, 10 hard-deleted, {len(restored)} restored "
                   "from deleted items")
        later = now + timedelta(minutes=15)
        r = asyncio.run(sync_once(settings, tenant, engine, now=later, show_progress=True))
        typer.echo("   " + r.line())
        back = r.summary().get("restored", 0)
        typer.echo(f"   restored: {back} {'user' if back == 1 else 'users'} back in the directory")
        _listed(r.plan.takes, "taken")
        _listed(r.plan.frees, "freed")

        _say("5. Seat status")
        with db.session_scope(engine) as s:
            print_status(tenant_status(s, TENANT, later))
        typer.echo(
            f"\n   JSON: licsync --config {_write_config(workdir, settings, graph)} status --tenant {TENANT} --json"
        )
        if serve:
            _serve(settings, engine, later)


def _write_config(workdir: Path, settings: Settings, graph: Any) -> Path:
    """A config file for exploring the demo's database with the CLI afterwards."""
    path = workdir / "licsync.toml"
    t = settings.tenant[0]
    path.write_text(
        "\n".join(
            [
                "# Written by `licsync demo`: the demo's database and its (stopped) Graph emulator.",
                "[database]",
                f'url = "{settings.database.url}"',
                "",
                "[vendor]",
                f'public_key = "{settings.vendor.public_key}"',
                "",
                "[[tenant]]",
                f'name = "{t.name}"',
                f'tenant_id = "{t.tenant_id}"',
                f'client_id = "{t.client_id}"',
                f'client_secret = "{t.client_secret}"',
                f'authority = "{t.authority}"',
                f'graph_url = "{t.graph_url}"',
                f'ca_bundle = "{t.ca_bundle}"',
                'admins = ["it-admin@contoso.example"]',
                "",
                "[api]",
                f'listen = "{settings.api.listen}"',
                "",
            ]
        ),
        encoding="utf-8",
    )
    return path


def _serve(settings: Settings, engine: Any, now: datetime) -> None:


    with db.session_scope(engine) as s:
        token = create_token(s, TENANT, "tenant-admin", [], now, label="demo")
    base = f"http://{settings.api.listen}"
    app = create_app(settings, engine)
    code = app.state.ctx.login_codes.issue(token)  # a one-time code: the link carries no token
    _say("6. Dashboard")
    typer.echo(f"   {base}/ui/login?code={code}  (works once, for five minutes)")
    typer.echo(f"   (or open {base}/ and paste the token: {token})")
    typer.echo(f"   API: curl -H 'Authorization: Bearer {token}' {base}/api/v1/tenants/{TENANT}/status")
    typer.echo("   Ctrl-C stops the demo.")
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning")
