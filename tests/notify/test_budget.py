"""Exchange's mailbox limits counted in the database: replicas share 30 messages a minute and
10,000 recipients a day per mailbox, on SQLite and PostgreSQL, with real concurrent threads."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync.db.models import MailSend
from licsync.graph.emulator import EmulatorServer
from licsync.notify.budget import MailBudget
from licsync.notify.factory import build_transport
from licsync.notify.graph_transport import GraphTransport
from licsync.notify.outbox import drain
from licsync.notify.transports import TransportUnavailable
from tests.notify.conftest import NOW, make_settings
from tests.notify.test_transports import graph, queue  # noqa: F401 - the emulator fixture

SENDER = "licsync@contoso.example"


class Clock:
    """Wall time shared by the 'replicas'; sleeping advances it."""

    def __init__(self) -> None:
        self.now: datetime = NOW
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += timedelta(seconds=seconds)


def test_two_replicas_share_thirty_a_minute(engine: Engine) -> None:
    clock = Clock()
    replicas = [MailBudget(engine, clock=clock), MailBudget(engine, clock=clock)]
    granted: list[int] = []
    lock = threading.Lock()

    def hammer(budget: MailBudget) -> None:
        for _ in range(25):
            if budget.reserve(SENDER) == 0:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=hammer, args=(r,)) for r in replicas for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 30  # 100 attempts in the same instant, from two replicas: exactly 30 places
    assert replicas[1].reserve(SENDER.upper()) == pytest.approx(60.0)  # a mailbox is one, whatever its case
    clock.now += timedelta(seconds=59.5)
    assert replicas[0].reserve(SENDER) == pytest.approx(0.5)
    clock.now += timedelta(seconds=0.5)
    assert replicas[0].reserve(SENDER) == 0
    assert replicas[0].reserve("other@contoso.example") == 0  # another mailbox has its own budget


def test_the_daily_recipient_budget_stops_the_drain_until_it_frees(engine: Engine) -> None:
    clock = Clock()
    budget = MailBudget(engine, per_minute=1000, recipients_per_day=5, clock=clock, sleep=clock.sleep)

    async def send(n: int) -> None:
        for _ in range(n):
            await budget.acquire(SENDER)
            clock.now += timedelta(hours=1)

    asyncio.run(send(5))
    with pytest.raises(TransportUnavailable) as err:
        asyncio.run(budget.acquire(SENDER))
    assert err.value.retry_after == pytest.approx(timedelta(hours=19).total_seconds())  # the first expires
    assert "10,000" not in str(err.value) and "5 recipients" in str(err.value)
    clock.now += timedelta(hours=19)
    assert asyncio.run(budget.acquire(SENDER)) == 0
    with Session(engine) as s:  # the rows of a day ago are pruned as it goes
        assert s.exec(select(func.count()).select_from(MailSend)).one()[0] == 5  # type: ignore[call-overload]


def test_graph_transports_of_two_replicas_wait_for_each_other(sqlite_engine: Engine,
                                                              graph: tuple[EmulatorServer, Any]) -> None:  # noqa: F811
    srv, tenant = graph
    clock = Clock()
    settings = make_settings(transport="graph", tenants=[tenant])
    assert isinstance(build_transport(settings, engine=sqlite_engine), GraphTransport)
    assert build_transport(settings, engine=sqlite_engine).budget is not None  # type: ignore[attr-defined]
    a, b = (GraphTransport(tenant, budget=MailBudget(sqlite_engine, clock=clock, sleep=clock.sleep))
            for _ in range(2))
    queue(sqlite_engine, 31)
    first = asyncio.run(drain(sqlite_engine, settings, a, NOW, limit=20))
    second = asyncio.run(drain(sqlite_engine, settings, b, NOW, limit=20))
    assert (first.sent, second.sent) == (20, 11) and len(srv.emulator.outbox) == 31
    assert clock.slept == [60.0]  # replica b's 11th (the 31st of the mailbox) waited for the minute
