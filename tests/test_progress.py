"""Progress of a long Graph read: the users read so far (not 0), a rich line on a terminal, a periodic
JSON log line elsewhere."""

from __future__ import annotations

import io
import json

from sqlalchemy.engine import Engine

from licsync import db
from licsync.progress import SyncProgress
from tests.graph.conftest import GraphEnv
from tests.test_sync import cycle, make_settings


def test_the_progress_callback_counts_the_users_read_page_by_page(graph_env: GraphEnv, tmp_path) -> None:
    graph_env.tenant.directory.add_users(45, seed=1)
    graph_env.tenant.page_size = 10
    url = f"sqlite:///{tmp_path}/licsync.db"
    settings = make_settings(graph_env, url)
    engine: Engine = db.get_engine(url)
    db.upgrade(engine)
    calls: list[tuple[int, int]] = []
    cycle(graph_env, settings, engine, full=True, progress=lambda pages, users: calls.append((pages, users)))
    assert [p for p, _ in calls] == [1, 2, 3, 4, 5]
    users = [u for _, u in calls]
    assert users == sorted(users) and users[0] == 10 and users[-1] == 45


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_off_a_terminal_a_json_log_line_every_interval() -> None:
    out, clock = io.StringIO(), Clock()
    with SyncProgress("contoso", stream=out, terminal=False, every=30, clock=clock) as p:
        for page in range(1, 11):
            clock.t += 10  # a page every 10 s
            p(page, page * 200)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["users"] for line in lines] == [600, 1200, 1800]  # at 30 s, 60 s, 90 s
    first = lines[0]
    assert first["event"] == "graph_read_progress" and first["tenant"] == "contoso" and first["pages"] == 3
    assert first["users_per_second"] == 20.0 and first["elapsed_seconds"] == 30.0


def test_on_a_terminal_one_rich_line_with_users_rate_and_elapsed() -> None:
    out, clock = io.StringIO(), Clock()
    with SyncProgress("contoso", stream=out, terminal=True, clock=clock) as p:
        clock.t += 4
        p(174, 40_000)
        p._bar.refresh()  # type: ignore[union-attr]
    text = out.getvalue()
    assert "contoso: reading Graph" in text and "174 pages" in text and "40,000" in text
    assert "10,000 users/s" in text and "0:00:0" in text
