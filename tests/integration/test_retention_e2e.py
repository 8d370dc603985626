"""The real `incident-bridge worker` prunes by itself: a database with rows of forty days ago, a worker started with
BRIDGE_RETENTION=30d and its first pass moved to the start (BRIDGE_RETENTION_FIRST_PASS), and the old rows go while
today's stay. With BRIDGE_RETENTION=off the same worker prunes nothing. The 30d case runs on PostgreSQL too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.store import Store, alerts, jobs
from tests.support.postgres import fresh_database
from tests.support.server import WorkerProcess, bridge_env, wait_for

DAY = 86400.0


def seed(url: str) -> dict[str, int]:
    """Rows of forty days ago and of now; their ids by name."""
    store = Store.open(url)
    old, now = time.time() - 40 * DAY, time.time()
    out = {}
    with store.transaction() as conn:
        for name, at in (("old", old), ("new", now)):
            out[f"alert-{name}"] = int(conn.execute(alerts.insert().values(
                source="datadog", source_event_id=name, received_at=at, title=name, state="firing",
                group_key=name, dedup_key=name, action="record", outcome="recorded", alert_json="{}",
                decision_json="{}", journaled_at=at, decided_at=at)).inserted_primary_key[0])
            out[f"job-{name}"] = int(conn.execute(jobs.insert().values(
                kind="event", dedup_key=name, action="trigger", priority=2, payload_json="{}",
                state="delivered", attempts=1, next_attempt_at=at, created_at=at,
                updated_at=at)).inserted_primary_key[0])
        # The newest job of its kind is kept whatever its age: one more, newer, so the old one can go.
        conn.execute(jobs.insert().values(kind="event", dedup_key="newest", action="trigger", priority=2,
                                          payload_json="{}", state="pending", attempts=0,
                                          next_attempt_at=now + 10 * DAY, created_at=now, updated_at=now))
    store.engine.dispose()
    return out


def present(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            a = {f"alert-{v}" for v in conn.execute(sa.select(alerts.c.source_event_id)).scalars()}
            j = {f"job-{v}" for v in conn.execute(sa.select(jobs.c.dedup_key)).scalars()}
    finally:
        engine.dispose()
    return a | j


@pytest.mark.parametrize(("retention", "left"), [
    ("30d", {"alert-new", "job-new", "job-newest"}),
    ("off", {"alert-old", "alert-new", "job-old", "job-new", "job-newest"}),
], ids=["30d", "off"])
def test_the_worker_prunes_by_itself(tmp_path: Path, retention: str, left: set[str]) -> None:
    run(tmp_path, retention, left, None)


def test_the_worker_prunes_by_itself_on_postgresql(tmp_path: Path) -> None:
    with fresh_database() as url:
        run(tmp_path, "30d", {"alert-new", "job-new", "job-newest"}, url)


def run(tmp_path: Path, retention: str, left: set[str], database_url: str | None) -> None:
    """Seed, start a worker with `retention`, wait for its pass (or its word that it is off), compare."""
    env = bridge_env(tmp_path, BRIDGE_RETENTION=retention, BRIDGE_RETENTION_FIRST_PASS="0.2")
    if database_url:
        env["BRIDGE_DATABASE_URL"] = database_url
    url = env["BRIDGE_DATABASE_URL"]
    seed(url)
    worker = WorkerProcess(tmp_path, env).start()
    try:
        if retention == "off":
            # The retention thread says so and ends: nothing can prune after this line.
            wait_for(lambda: "retention is off" in worker.output(), timeout=30)
        else:
            wait_for(lambda: "alert-old" not in present(url) and "job-old" not in present(url), timeout=30)
            wait_for(lambda: "retention: pruned 1 alerts, 1 jobs, 0 notices" in worker.output(), timeout=10)
    finally:
        worker.stop()
    assert present(url) == left
