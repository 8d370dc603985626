"""The delivery worker's two lanes: a follow-up that hangs (a slow REST call, a long related-incident lookup)
never holds a page back."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import DeliveryWorker
from bridge.followups import FollowUps
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty


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
