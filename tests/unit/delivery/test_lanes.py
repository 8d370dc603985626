"""The delivery worker's two lanes: a follow-up that hangs (a slow REST call, a long related-incident lookup)
never holds a page back; an idle lane sleeps until woken or until its next job is due, and a job held back behind
an earlier one of its key does not make it poll."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import DeliveryWorker
from bridge.followups import FollowUps
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.support.server import wait_for


def test_a_page_goes_out_while_a_follow_up_hangs(store: Store, pd: FakePagerDuty) -> None:
    release = threading.Event()
    started = threading.Event()

    def hanging(job: dict[str, Any]) -> None:
        started.set()
        release.wait(30)

    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url)
    followups = FollowUps(store, settings, RulesetHolder(Path("rules"), None), None, clock=time.time)
    followups.handlers["hanging_note"] = hanging
    now = time.time()
    # The follow-up is queued first and is the more urgent: with one loop it would be taken first and hold the page.
    store.enqueue("hanging_note", "k0", None, {}, now, priority=0)
    store.enqueue("event", "page-1", None, {"event_action": "trigger", "dedup_key": "page-1", "payload": {
        "summary": "disk full", "source": "host-1", "severity": "critical"}}, now, action="trigger", priority=1)
    worker = DeliveryWorker(store, settings, client=EventsClient(ROUTING_KEY, pd.url, timeout=2.0),
                            out=io.StringIO(), followups=followups)
    runner = threading.Thread(target=worker.run, kwargs={"idle_sleep": 0.05}, daemon=True)
    runner.start()
    try:
        assert started.wait(10), "the follow-up never started"
        deadline = time.monotonic() + 10
        while not pd.triggers_for("page-1") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pd.triggers_for("page-1"), "the page waited for the hanging follow-up"
        assert not release.is_set()  # it went out while the follow-up still hung
    finally:
        release.set()
        worker.stop()
        runner.join(10)
    assert not runner.is_alive()
    assert {j["state"] for j in store.list_jobs()} == {"delivered"}


EVENT = {"event_action": "trigger", "payload": {"summary": "disk full", "source": "host-1", "severity": "critical"}}


def page(key: str) -> dict[str, Any]:
    return {**EVENT, "dedup_key": key}


def statements(store: Store) -> list[str]:
    """Every SQL statement the store runs from now on (observed on its engine, nothing replaced)."""
    seen: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def dry_run_worker(store: Store) -> tuple[DeliveryWorker, threading.Thread]:
    """A worker without a routing key (each event is recorded as sent, dry-run), its lanes running with the
    default idle wait, as `incident-bridge worker` runs them."""
    worker = DeliveryWorker(store, Settings(), out=io.StringIO())
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    return worker, runner


def sent_at(store: Store, job_id: int) -> float | None:
    job = store.get_job(job_id)
    return datetime.fromisoformat(job["delivered_at"]).timestamp() if job and job["delivered_at"] else None


def test_an_idle_lane_sleeps_until_its_next_job_is_due(store: Store) -> None:
    worker, runner = dry_run_worker(store)
    try:
        time.sleep(0.3)  # asleep, for the fallback's 5 s
        now = time.time()
        job_id = store.enqueue("event", "later", None, page("later"), now, now + 1.0, action="trigger")
        worker.notify()  # as the stage does once it has queued jobs
        done = wait_for(lambda: sent_at(store, job_id), timeout=10)
        assert 1.0 <= done - now <= 1.8, f"sent {done - now:.2f} s after it was queued, due after 1 s"
    finally:
        worker.stop()
        runner.join(10)
    assert not runner.is_alive()


def test_a_page_held_back_behind_its_keys_retry_waits_without_polling(store: Store) -> None:
    now = time.time()
    # The trigger failed and retries in 2 s; the resolve of its key is due now but may not overtake it.
    trigger = store.enqueue("event", "k", None, page("k"), now, now + 2.0, action="trigger")
    resolve = store.enqueue("event", "k", None, {"event_action": "resolve", "dedup_key": "k"}, now,
                            action="resolve")
    seen = statements(store)
    worker, runner = dry_run_worker(store)
    try:
        time.sleep(1.5)
        # Before, the lane took the resolve's past due time for its next wake-up and looked every 10 ms.
        assert len(seen) < 40, f"{len(seen)} statements in 1.5 s while nothing could go"
        wait_for(lambda: sent_at(store, resolve), timeout=10)
    finally:
        worker.stop()
        runner.join(10)
    first, second = sent_at(store, trigger), sent_at(store, resolve)
    assert first is not None and second is not None and now + 2.0 <= first <= second <= now + 3.0
