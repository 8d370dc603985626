"""The outbox: events of one dedup key leave in order; a resolve is never overtaken by its trigger's retry; a
trigger still waiting when its resolve arrives is dropped. Real store (SQLite), real worker, PagerDuty faked at
the HTTP edge, a manual clock (no sleeping)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient, build_event
from bridge.delivery.worker import DeliveryWorker
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.store import Store
from tests.fakes.pagerduty import ROUTING_KEY, FakePagerDuty

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'outbox.db'}")


def worker_for(store: Store, pd: FakePagerDuty, clock: Clock, rate: int = 120) -> DeliveryWorker:
    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url, events_rate_per_minute=rate)
    client = EventsClient(ROUTING_KEY, pd.url, timeout=2.0)
    return DeliveryWorker(store, settings, client=client, clock=clock, out=io.StringIO(), retry_multiplier=1.0,
                          retry_max=10.0)


def receive(store: Store, event_id: str, state: AlertState, *, severity: Severity | None = Severity.P1,
            group: str = "g1", at: float | None = None) -> dict[str, object]:
    alert = Alert(source="test", source_event_id=event_id, received_at=T0, title=f"alert {group}", state=state,
                  group_key=group)
    action = Action.RESOLVE if state is AlertState.RESOLVED else Action.PAGE
    decision = Decision(action=action, severity=severity, rule="r", reasons=("rule r matched",),
                        urgency=severity.urgency if severity else None)
    now = datetime.fromtimestamp(at, tz=UTC) if at else T0
    return store.accept([(alert, decision)], [], now, build_event)[0].to_json()


def drain(worker: DeliveryWorker, clock: Clock, seconds: float = 30.0, step: float = 1.0) -> None:
    end = clock.now + seconds
    while clock.now < end:
        while worker.run_once():
            pass
        clock.now += step


def test_resolve_waits_for_a_trigger_being_sent_and_then_follows_it(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    receive(store, "t", AlertState.FIRING)
    trigger = store.lease_job(clock.now, 30, "other-worker:1")  # another worker is sending the trigger now
    assert trigger is not None and trigger["action"] == "trigger"
    receive(store, "r", AlertState.RESOLVED)
    assert store.lease_job(clock.now, 30, "me:2") is None  # the resolve may not overtake the trigger in flight
    store.job_delivered(trigger["id"], clock.now, dry_run=False, response=None)
    resolve = store.lease_job(clock.now, 30, "me:2")
    assert resolve is not None and resolve["action"] == "resolve"


def test_a_trigger_still_retrying_when_its_resolve_arrives_is_dropped(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock)
    pd.fail(503, times=1, api="events")
    receive(store, "t", AlertState.FIRING)
    assert worker.run_once()  # the trigger fails once and waits for its retry
    assert pd.triggers_for("g1") == []
    receive(store, "r", AlertState.RESOLVED)
    drain(worker, clock)
    actions = [e.event_action for e in pd.events if e.dedup_key == "g1"]
    assert actions == ["resolve"]  # no trigger re-opening the incident after (or before) its resolve
    states = {j["action"]: j["state"] for j in store.list_jobs() if j["kind"] == "event"}
    assert states == {"trigger": "superseded", "resolve": "delivered"}


def test_a_recovery_before_anything_was_sent_pages_nothing(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock)
    receive(store, "t", AlertState.FIRING)
    answer = receive(store, "r", AlertState.RESOLVED)
    assert answer["outcome"] == "resolved_before_page"
    drain(worker, clock)
    assert pd.events == []


def test_events_of_one_key_go_out_in_order_across_failures(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock)
    pd.fail(500, times=2, api="events")
    receive(store, "t1", AlertState.FIRING, severity=Severity.P2)
    receive(store, "t2", AlertState.FIRING, severity=Severity.P0)  # raises: a second trigger
    drain(worker, clock, seconds=60)
    severities = [e.body["payload"]["severity"] for e in pd.events if e.dedup_key == "g1"]
    assert severities == ["warning", "critical"]


def test_most_severe_first_when_rate_limited_and_nothing_dropped(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock, rate=3)
    for i in range(5):
        receive(store, f"low{i}", AlertState.FIRING, severity=Severity.P3, group=f"low{i}")
    receive(store, "high", AlertState.FIRING, severity=Severity.P0, group="high")
    while worker.run_once():
        pass
    assert len(pd.events) == 3
    assert pd.events[0].dedup_key == "high"
    clock.now += 61
    while worker.run_once():
        pass
    assert len(pd.events) == 6


def test_a_worker_killed_mid_send_has_its_job_released_at_the_next_start(store: Store, pd: FakePagerDuty,
                                                                          ) -> None:
    import socket

    clock = Clock()
    receive(store, "t", AlertState.FIRING)
    dead_pid = 2 ** 22 + 12345  # no such process
    job = store.lease_job(clock.now, 3600, f"{socket.gethostname()}:{dead_pid}")
    assert job is not None
    assert store.lease_job(clock.now, 30, "me:1") is None
    released = store.release_orphaned_leases(socket.gethostname(), lambda pid: pid != dead_pid, clock.now)
    assert released == 1
    worker = worker_for(store, pd, clock)
    assert worker.run_once()
    assert len(pd.triggers_for("g1")) == 1


def test_persisted_attempts_continue_the_backoff_after_a_restart(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    pd.fail(503, times=3, api="events")
    receive(store, "t", AlertState.FIRING)
    for _ in range(3):
        worker = worker_for(store, pd, clock)  # a new worker each time, as after a restart
        while not worker.run_once():
            clock.now += 0.5
        clock.now += 0.1
    [job] = store.list_jobs()
    assert job["attempts"] == 3 and job["state"] == "pending" and job["reason"] == "server_error"
    drain(worker_for(store, pd, clock), clock, seconds=30)
    [job] = store.list_jobs()
    assert job["state"] == "delivered" and job["attempts"] == 4
    assert len(pd.triggers_for("g1")) == 1


def test_an_incident_resolves_when_every_attached_group_has_recovered(store: Store, pd: FakePagerDuty) -> None:
    from bridge.rules.loader import compile_sources

    ruleset = compile_sources([("storm.yaml", "settings: {storm_threshold: 1, storm_window: 10m}\n")]).ruleset
    clock = Clock()
    worker = worker_for(store, pd, clock)

    def accept(event_id: str, group: str, state: AlertState) -> dict[str, object]:
        alert = Alert(source="test", source_event_id=event_id, received_at=T0, title=f"disk full {group}",
                      state=state, group_key=group, fields={"monitor_id": "42"})
        action = Action.RESOLVE if state is AlertState.RESOLVED else Action.PAGE
        decision = Decision(action=action, severity=Severity.P2, rule="disk", reasons=("rule disk matched",))
        return store.accept([(alert, decision)], [], T0, build_event, ruleset)[0].to_json()

    first = accept("a1", "host-a", AlertState.FIRING)
    second = accept("b1", "host-b", AlertState.FIRING)
    assert (first["outcome"], second["outcome"]) == ("opened", "storm")
    assert second["incident_id"] == first["incident_id"]
    drain(worker, clock, seconds=5)
    assert accept("a2", "host-a", AlertState.RESOLVED)["outcome"] == "member_recovered"
    assert accept("b2", "host-b", AlertState.RESOLVED)["outcome"] == "resolved"
    drain(worker, clock, seconds=5)
    assert [e.event_action for e in pd.events] == ["trigger", "resolve"]
    assert store.find_incident("host-a")["status"] == "resolved"  # type: ignore[index]
