"""The delivery worker while another writer holds the database: the lanes keep running, the page leaves once the
database is free, and a follow-up that met the locked database is tried again without counting as our own bug."""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import DeliveryWorker
from bridge.followups import FollowUps
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.dblock import DatabaseHolder
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty

TRIGGER = {"event_action": "trigger", "dedup_key": "page-1", "payload": {
    "summary": "disk full", "source": "host-1", "severity": "critical"}}


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(predicate())


def start(worker: DeliveryWorker) -> threading.Thread:
    runner = threading.Thread(target=worker.run, kwargs={"idle_sleep": 0.05}, daemon=True)
    runner.start()
    return runner


def test_a_page_leaves_once_the_database_is_free(tmp_path: Path, pd: FakePagerDuty,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{db}", lock_timeout=0.2)
    store.enqueue("event", "page-1", None, TRIGGER, time.time(), action="trigger", priority=1)
    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url)
    worker = DeliveryWorker(store, settings, client=EventsClient(ROUTING_KEY, pd.url, timeout=2.0),
                            out=io.StringIO())
    with caplog.at_level(logging.WARNING, logger="bridge.delivery.worker"), DatabaseHolder(db):
        runner = start(worker)
        time.sleep(0.8)  # the lane finds the job but cannot lease it, more than once
        assert runner.is_alive() and not pd.triggers_for("page-1")
    try:
        assert wait_until(lambda: pd.triggers_for("page-1")), "the page never left after the database freed"
        assert wait_until(lambda: [j["state"] for j in store.list_jobs()] == ["delivered"])
        assert any("database is busy" in r.getMessage() for r in caplog.records)
        assert not any(r.exc_info for r in caplog.records)  # a warning, not a traceback
    finally:
        worker.stop()
        runner.join(10)
    assert len(pd.triggers_for("page-1")) == 1


def test_a_follow_up_that_met_a_locked_database_is_not_counted_as_our_bug(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{db}", lock_timeout=0.2)
    calls: list[float] = []

    def note(job: dict[str, Any]) -> None:
        calls.append(time.time())
        if len(calls) == 1:
            with DatabaseHolder(db):  # another writer took the database while this follow-up ran
                store.record_audit("test", "note", "k0", {}, time.time())

    settings = Settings()
    followups = FollowUps(store, settings, RulesetHolder(Path("rules"), None), None, clock=time.time)
    followups.handlers["note"] = note
    store.enqueue("note", "k0", None, {}, time.time())
    worker = DeliveryWorker(store, settings, out=io.StringIO(), followups=followups)
    worker.lease_seconds = 0.3  # the job, still leased when the attempt broke off, is due again soon
    runner = start(worker)
    try:
        assert wait_until(lambda: [j["state"] for j in store.list_jobs()] == ["delivered"])
    finally:
        worker.stop()
        runner.join(10)
    [job] = store.list_jobs()
    assert len(calls) == 2 and job["internal_failures"] == 0 and job["last_error"] is None
