"""Missed resolves: Datadog sends no recovery after Alert -> No Data -> OK, so the worker asks Datadog for the monitor
group's state (`MonitorsApi.get_monitor(group_states="all")`) of the Datadog incidents open longer than
BRIDGE_MISSED_RESOLVE_AFTER. Real store (SQLite), real delivery worker and follow-ups, Datadog and PagerDuty faked
at the HTTP edge (the Datadog fake answers with the published `Monitor` / `MonitorState` shapes), a manual clock."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import DeliveryWorker, Lane
from bridge.followups import FollowUps
from bridge.followups.missed_resolve import all_ok, group_status, monitor_groups
from bridge.model import Alert, AlertState
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.engine import evaluate
from bridge.rules.holder import RulesetHolder
from bridge.store import JobKind, Store
from tests.support.fakes.datadog import API_KEY, APP_KEY, FakeDatadog
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.support.shared import copy_shipped_rules

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
MONITOR = 183664512
GROUP = "env:prod,service:checkout"
HOUR = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dd() -> Iterator[FakeDatadog]:
    with FakeDatadog() as fake:
        fake.add_monitor({"id": MONITOR, "multi": True})
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture
def holder(tmp_path: Path) -> RulesetHolder:
    holder = RulesetHolder(copy_shipped_rules(tmp_path / "rules"), None)
    holder.load()
    return holder


class Worker:
    """The worker process's delivery worker and follow-ups on a store, as `run_worker` builds them."""

    def __init__(self, store: Store, holder: RulesetHolder, pd: FakePagerDuty, dd: FakeDatadog, clock: Clock,
                 **overrides: Any) -> None:
        settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url, dd_api_key=Secret(API_KEY),
                            dd_app_key=Secret(APP_KEY), datadog_api_url=dd.url, http_timeout_seconds=1.0,
                            **overrides)
        self.followups = FollowUps(store, settings, holder, None, clock=clock)
        self.worker = DeliveryWorker(store, settings, client=EventsClient(ROUTING_KEY, pd.url, timeout=2.0),
                                     clock=clock, out=io.StringIO(), retry_multiplier=1.0, retry_max=10.0,
                                     followups=self.followups)

    def drain(self) -> None:
        while self.worker.run_once(Lane.ALL):
            pass

    def close(self) -> None:
        self.worker.close()


def page(store: Store, holder: RulesetHolder, clock: Clock, event_id: str, scope: str = GROUP) -> int:
    """A P0 alert of the checkout monitor's group, decided by the shipped rules; returns its incident's id."""
    now = datetime.fromtimestamp(clock.now, tz=UTC)
    alert = Alert(source="datadog", source_event_id=event_id, received_at=now, title="Checkout: users cannot pay",
                  state=AlertState.FIRING, group_key=f"datadog:{MONITOR}:{scope}", service="checkout",
                  dimensions={"users_affected_pct": 27.4}, fields={"monitor_id": str(MONITOR), "scope": scope})
    ruleset = holder.current
    decided = accept_and_decide(store, [(alert, evaluate(alert, ruleset, now))], [], now, ruleset)[0].to_json()
    return int(decided["incident_id"])


def monitor_lookups(dd: FakeDatadog) -> int:
    return len([r for r in dd.requests_to(f"/api/v1/monitor/{MONITOR}") if r.status == 200])


@pytest.mark.parametrize(("status", "resolved"), [("OK", True), ("Alert", False), ("No Data", False),
                                                  ("Warn", False)], ids=["ok", "alert", "no-data", "warn"])
def test_an_old_incident_is_resolved_only_when_datadog_says_ok(store: Store, holder: RulesetHolder,
                                                               pd: FakePagerDuty, dd: FakeDatadog, status: str,
                                                               resolved: bool) -> None:
    clock = Clock()
    worker = Worker(store, holder, pd, dd, clock)
    incident_id = page(store, holder, clock, "e1")
    worker.drain()  # the page goes out
    key = store.incident_row(incident_id)["dedup_key"]  # type: ignore[index]
    assert len(pd.triggers_for(key)) == 1
    dd.set_group_state(MONITOR, "service:checkout,env:prod", status)  # Datadog's tag order need not be ours
    assert worker.followups.queue_missed_resolves() == "round 1 queued"
    clock.now += HOUR + 1
    worker.drain()
    assert monitor_lookups(dd) == 1
    incident = store.incident_row(incident_id)
    assert incident is not None and incident["status"] == ("resolved" if resolved else "open")
    notes = [e["description"] for e in store.incident_timeline(incident_id) if "Datadog reports" in e["description"]]
    resolves = [e for e in pd.events if e.dedup_key == key and e.event_action == "resolve"]
    if resolved:
        assert notes == [f"resolved: Datadog reports monitor {MONITOR} group {GROUP} OK, and no recovery came "
                         "(Datadog sends none after Alert -> No Data -> OK); checked after 3600s open"]
        assert len(resolves) == 1
    else:
        assert notes == [] and resolves == []
    # The next round is queued, a reconcile interval later.
    [following] = [j for j in store.list_jobs(state="pending") if j["kind"] == JobKind.MISSED_RESOLVE]
    assert following["payload"] == {"round": 2}
    worker.close()


def test_a_young_incident_is_not_looked_up(store: Store, holder: RulesetHolder, pd: FakePagerDuty,
                                           dd: FakeDatadog) -> None:
    clock = Clock()
    worker = Worker(store, holder, pd, dd, clock)
    incident_id = page(store, holder, clock, "e1")
    dd.set_group_state(MONITOR, GROUP, "OK")
    worker.followups.queue_missed_resolves()
    clock.now += HOUR - 60
    worker.drain()
    assert monitor_lookups(dd) == 0
    assert store.incident_row(incident_id)["status"] == "open"  # type: ignore[index]
    worker.close()


@pytest.mark.parametrize("fault", ["5xx", "timeout"])
def test_datadog_failing_resolves_nothing_and_the_round_is_retried(store: Store, holder: RulesetHolder,
                                                                   pd: FakePagerDuty, dd: FakeDatadog,
                                                                   fault: str) -> None:
    clock = Clock()
    worker = Worker(store, holder, pd, dd, clock)
    incident_id = page(store, holder, clock, "e1")
    worker.drain()
    dd.set_group_state(MONITOR, GROUP, "OK")
    worker.followups.queue_missed_resolves()
    clock.now += HOUR + 1
    if fault == "5xx":
        dd.fail(503, times=1, path="/api/v1/monitor/")
    else:
        dd.delay(3.0, times=1, path="/api/v1/monitor/")  # longer than the 1 s HTTP timeout
    worker.drain()
    assert store.incident_row(incident_id)["status"] == "open"  # type: ignore[index]
    [waiting] = [j for j in store.list_jobs(state="pending") if j["kind"] == JobKind.MISSED_RESOLVE]
    assert waiting["attempts"] == 1 and waiting["reason"] == "datadog"
    assert API_KEY not in (waiting["last_error"] or "") and APP_KEY not in (waiting["last_error"] or "")
    clock.now += 20  # the worker's backoff: the same round again
    worker.drain()
    assert store.incident_row(incident_id)["status"] == "resolved"  # type: ignore[index]
    worker.close()


def test_without_datadog_keys_no_round_is_queued(store: Store, holder: RulesetHolder, pd: FakePagerDuty) -> None:
    followups = FollowUps(store, Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url), holder, None,
                          clock=Clock())
    assert followups.queue_missed_resolves() is None
    assert store.list_jobs() == []


@pytest.mark.parametrize(("monitor", "group", "expected"), [
    pytest.param({"state": {"groups": {"env:prod,service:a": {"status": "OK"}}}}, "service:a,env:prod", "OK",
                 id="tag-order-ignored"),
    pytest.param({"state": {"groups": {"env:prod,service:a": {"status": "No Data"}}}}, "env:prod,service:a",
                 "No Data", id="no-data"),
    pytest.param({"state": {"groups": {"env:prod,service:a": {"status": "OK"}}}}, "env:prod,service:b", None,
                 id="unknown-group"),
    pytest.param({"overall_state": "OK", "state": {"groups": {}}}, "", "OK", id="simple-monitor"),
    pytest.param(None, "env:prod", None, id="no-such-monitor"),
])
def test_group_status(monitor: dict[str, Any] | None, group: str, expected: str | None) -> None:
    assert group_status(monitor, group) == expected


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], False), (["OK"], True), (["OK", "OK"], True), (["OK", "Alert"], False), (["OK", None], False),
    (["No Data"], False),
])
def test_all_ok(statuses: list[str | None], expected: bool) -> None:
    assert all_ok(statuses) is expected


def test_monitor_groups_of_an_incident() -> None:
    alerts = [{"alert": {"fields": {"monitor_id": "12", "scope": "env:prod"}}},
              {"alert": {"fields": {"monitor_id": "12", "scope": "env:prod"}}},
              {"alert": {"fields": {"monitor_id": "", "scope": "x"}}},
              {"alert": {"fields": {}}}]
    assert monitor_groups(alerts) == {(12, "env:prod")}
