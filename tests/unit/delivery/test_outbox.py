"""The outbox: events of one dedup key leave in order; a resolve is never overtaken by its trigger's retry; a
trigger still waiting when its resolve arrives is dropped; our own bugs are retried a bounded number of times,
then dead-lettered, while PagerDuty's failures are retried for as long as it takes; operators retry and discard
jobs without breaking the order. Real store (SQLite), real worker, PagerDuty faked at the HTTP edge, a manual
clock (no sleeping)."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import MAX_INTERNAL_FAILURES, DeliveryWorker, error_summary
from bridge.errors import Conflict
from bridge.followups import FollowUps
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.holder import RulesetHolder
from bridge.rules.loader import compile_sources
from bridge.store import Store, jobs
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def worker_for(store: Store, pd: FakePagerDuty, clock: Clock, rate: int = 120, *,
               client: EventsClient | None = None, followups: FollowUps | None = None,
               max_internal_failures: int = MAX_INTERNAL_FAILURES) -> DeliveryWorker:
    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url, events_rate_per_minute=rate)
    client = client or EventsClient(ROUTING_KEY, pd.url, timeout=2.0)
    return DeliveryWorker(store, settings, client=client, clock=clock, out=io.StringIO(), retry_multiplier=1.0,
                          retry_max=10.0, followups=followups, max_internal_failures=max_internal_failures)


NO_STORMS = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset


def receive(store: Store, event_id: str, state: AlertState, *, severity: Severity | None = Severity.P1,
            group: str = "g1", at: float | None = None) -> dict[str, object]:
    alert = Alert(source="test", source_event_id=event_id, received_at=T0, title=f"alert {group}", state=state,
                  group_key=group)
    action = Action.RESOLVE if state is AlertState.RESOLVED else Action.PAGE
    decision = Decision(action=action, severity=severity, rule="r", reasons=("rule r matched",),
                        urgency=severity.urgency if severity else None)
    now = datetime.fromtimestamp(at, tz=UTC) if at else T0
    # No storms: these tests open incidents of one rule for many groups on purpose.
    return accept_and_decide(store, [(alert, decision)], [], now, NO_STORMS)[0].to_json()


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


def test_a_refire_soon_after_the_resolution_reopens_the_incident(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock)
    first = receive(store, "f1", AlertState.FIRING)
    drain(worker, clock, seconds=3)
    receive(store, "r1", AlertState.RESOLVED, at=clock.now)
    again = receive(store, "f2", AlertState.FIRING, at=clock.now)  # before the worker sent the resolve
    assert (again["outcome"], again["incident_id"]) == ("reopened", first["incident_id"])
    drain(worker, clock, seconds=10)
    # The resolve that had not left never does: PagerDuty's incident stays open and the trigger joins it.
    assert [e.event_action for e in pd.events] == ["trigger", "trigger"]
    assert [i.status for i in pd.incidents_for("g1")] == ["triggered"]
    receive(store, "r2", AlertState.RESOLVED, at=clock.now)
    drain(worker, clock, seconds=10)
    clock.now += 600
    third = receive(store, "f3", AlertState.FIRING, at=clock.now)  # the resolve went out 10 min ago
    assert (third["outcome"], third["incident_id"]) == ("reopened", first["incident_id"])
    drain(worker, clock, seconds=10)
    assert [e.event_action for e in pd.events] == ["trigger", "trigger", "resolve", "trigger"]
    assert [i.status for i in pd.incidents_for("g1")] == ["resolved", "triggered"]  # a new one in PagerDuty
    incident = store.incident_row(int(first["incident_id"])) or {}
    assert [r["pagerduty_kept_open"] for r in incident["details"]["reopens"]] == [True, False]
    assert len(store.list_incidents()) == 1


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
        return accept_and_decide(store, [(alert, decision)], [], T0, ruleset)[0].to_json()

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


# -- our own bugs are bounded; operators retry and discard -------------------------------------------------------


class BrokenHandler:
    """A follow-up handler with a bug of ours (its message quotes a secret) until `fixed` is set."""

    def __init__(self) -> None:
        self.fixed = False
        self.calls = 0

    def __call__(self, job: dict[str, Any]) -> None:
        self.calls += 1
        if not self.fixed:
            raise RuntimeError(f"related lookup broke; key={ROUTING_KEY}\nsecond line of detail")


def followups_with(store: Store, clock: Clock, handler: BrokenHandler) -> FollowUps:
    followups = FollowUps(store, Settings(routing_key=Secret(ROUTING_KEY)), RulesetHolder(Path("rules"), None),
                          None, clock=clock)
    followups.handlers["broken_note"] = handler  # a follow-up kind of its own, beside the real ones
    return followups


def worker_records(caplog: pytest.LogCaptureFixture, job_id: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bridge.delivery.worker" and f"job {job_id} " in r.getMessage()]


def test_a_follow_up_failing_on_our_own_bug_is_retried_a_few_times_then_dead_lettered(
        store: Store, pd: FakePagerDuty, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.delivery.worker")
    clock = Clock()
    broken = BrokenHandler()
    worker = worker_for(store, pd, clock, followups=followups_with(store, clock, broken))
    job_id = store.enqueue("broken_note", "g1", None, {}, clock.now)
    drain(worker, clock, seconds=600)  # backoff at most 10 s here: far more time than the bound needs
    assert broken.calls == MAX_INTERNAL_FAILURES
    [job] = store.list_jobs(state="dead")
    assert (job["id"], job["attempts"], job["internal_failures"], job["reason"]) == (
        job_id, MAX_INTERNAL_FAILURES, MAX_INTERNAL_FAILURES, "internal")
    assert job["last_error"] == "RuntimeError: related lookup broke; key=***"
    records = worker_records(caplog, job_id)
    assert len(records) == MAX_INTERNAL_FAILURES
    with_traceback = [i for i, r in enumerate(records) if "Traceback (most recent call last)" in r.getMessage()]
    assert with_traceback == [0, MAX_INTERNAL_FAILURES - 1]  # the first failure and the dead-lettering
    assert "dead-lettered" in records[-1].getMessage()
    assert all("\n" not in r.getMessage() for r in records[1:-1])  # one line each in between
    assert ROUTING_KEY not in caplog.text
    drain(worker, clock, seconds=600)
    assert broken.calls == MAX_INTERNAL_FAILURES  # dead stays dead until an operator acts


def test_an_operator_retry_gives_the_whole_bound_again_and_delivers_once_fixed(store: Store,
                                                                                pd: FakePagerDuty) -> None:
    clock = Clock()
    broken = BrokenHandler()
    worker = worker_for(store, pd, clock, followups=followups_with(store, clock, broken), max_internal_failures=2)
    job_id = store.enqueue("broken_note", "g1", None, {}, clock.now)
    drain(worker, clock, seconds=60)
    assert (store.get_job(job_id) or {})["state"] == "dead" and broken.calls == 2
    retried = store.retry_job(job_id, clock.now)  # retried before the fix: two more tries, then dead again
    assert retried is not None
    assert (retried["state"], retried["attempts"], retried["internal_failures"]) == ("pending", 2, 0)
    drain(worker, clock, seconds=60)
    assert (store.get_job(job_id) or {})["state"] == "dead" and broken.calls == 4
    broken.fixed = True
    store.retry_job(job_id, clock.now)
    drain(worker, clock, seconds=5)
    job = store.get_job(job_id) or {}
    assert (job["state"], job["attempts"], broken.calls) == ("delivered", 5, 5)


def test_an_event_failing_on_our_own_bug_is_bounded_but_pagerduty_being_down_is_not(store: Store,
                                                                                     pd: FakePagerDuty) -> None:
    clock = Clock()

    def client_bug(request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("a bug in our client")  # not a transport error: not PagerDuty's answer either

    buggy = worker_for(store, pd, clock, client=EventsClient(ROUTING_KEY, pd.url,
                                                             transport=httpx2.MockTransport(client_bug)))
    receive(store, "bug", AlertState.FIRING, group="g-bug")
    drain(buggy, clock, seconds=600)
    [dead] = store.list_jobs(state="dead")
    assert (dead["dedup_key"], dead["attempts"], dead["reason"]) == ("g-bug", MAX_INTERNAL_FAILURES, "internal")
    assert dead["last_error"] == "RuntimeError: a bug in our client"

    pd.fail(503, times=MAX_INTERNAL_FAILURES + 3, api="events")  # PagerDuty down for longer than that bound
    receive(store, "down", AlertState.FIRING, group="g-down")
    drain(worker_for(store, pd, clock), clock, seconds=600)
    [down] = [j for j in store.list_jobs() if j["dedup_key"] == "g-down"]
    assert (down["state"], down["attempts"], down["internal_failures"]) == (
        "delivered", MAX_INTERNAL_FAILURES + 4, 0)
    assert len(pd.triggers_for("g-down")) == 1 and pd.triggers_for("g-bug") == []


@pytest.mark.parametrize(("raised", "expected"), [
    pytest.param(RuntimeError(f"bad key {ROUTING_KEY}"), "RuntimeError: bad key ***", id="secret-redacted"),
    pytest.param(ValueError("first line\nsecond line"), "ValueError: first line", id="first-line-only"),
    pytest.param(KeyError("severity"), "KeyError: 'severity'", id="key-error"),
    pytest.param(RuntimeError(""), "RuntimeError", id="no-message"),
    pytest.param(ModuleNotFoundError("No module named 'numpy'"), "ModuleNotFoundError: No module named 'numpy'",
                 id="import-error"),
    pytest.param(RuntimeError("x" * 495 + ROUTING_KEY), "RuntimeError: " + "x" * 483 + "...",
                 id="bounded-after-redaction"),
])
def test_error_summary(raised: Exception, expected: str) -> None:
    summary = error_summary(raised, [ROUTING_KEY])
    assert summary == expected and len(summary) <= 500 and ROUTING_KEY[:8] not in summary


def job_in(store: Store, state: str, now: float) -> int:
    """A trigger brought to `state` through the store's own operations; `sending` holds a live lease at now + 10
    and `sending_expired` an expired one."""
    receive(store, "t", AlertState.FIRING)
    [job] = store.list_jobs()
    if state == "superseded":
        receive(store, "r", AlertState.RESOLVED)  # the recovery came before anything was sent
    elif state == "discarded":
        store.discard_job(job["id"], now)
    elif state != "pending":
        store.lease_job(now, 1.0 if state == "sending_expired" else 60.0, "worker:1")
        if state in ("delivered", "dry_run"):
            store.job_delivered(job["id"], now, dry_run=state == "dry_run", response=None)
        elif state == "dead":
            store.job_failed(job["id"], now, error="PagerDuty answered 400", reason="rejected", retry_at=None)
    assert (store.get_job(job["id"]) or {})["state"] == state.removesuffix("_expired")
    return int(job["id"])


CONFLICT = "conflict"
OPERATIONS = [
    # (state before, retry_job gives, discard_job gives)
    ("pending", CONFLICT, "discarded"),
    ("sending", CONFLICT, CONFLICT),  # a live lease: the send may be reaching PagerDuty right now
    ("sending_expired", CONFLICT, "discarded"),  # its worker died or overran; a worker would take it again
    ("delivered", CONFLICT, CONFLICT),
    ("dry_run", CONFLICT, CONFLICT),
    ("dead", "pending", "discarded"),
    ("superseded", CONFLICT, CONFLICT),
    ("discarded", CONFLICT, "discarded"),  # discarding again changes nothing
]


@pytest.mark.parametrize(("state", "operation", "expected"), [
    pytest.param(state, op, expected, id=f"{op}-{state}")
    for state, retry, discard in OPERATIONS for op, expected in (("retry", retry), ("discard", discard))])
def test_retry_and_discard_by_job_state(store: Store, state: str, operation: str, expected: str) -> None:
    now = T0.timestamp()
    job_id = job_in(store, state, now)
    before = store.get_job(job_id) or {}
    act = store.retry_job if operation == "retry" else store.discard_job
    if expected == CONFLICT:
        with pytest.raises(Conflict) as refused:
            act(job_id, now + 10, actor="admin token")
        assert str(job_id) in str(refused.value) and isinstance(refused.value, ValueError)
        assert store.get_job(job_id) == before
    else:
        after = act(job_id, now + 10, actor="admin token")
        assert after == store.get_job(job_id)
        assert after is not None and after["state"] == expected and after["attempts"] == before["attempts"]
    changed = expected not in (CONFLICT, before["state"])
    entries = store.list_audit(action=f"job.{operation}")
    assert [(e["target"], e["details"]["from_state"]) for e in entries] == (
        [(str(job_id), before["state"])] if changed else [])


def test_retry_and_discard_of_an_unknown_job_answer_none(store: Store, pd: FakePagerDuty) -> None:
    assert store.retry_job(404, T0.timestamp()) is None
    assert store.discard_job(404, T0.timestamp()) is None


def test_a_discarded_job_does_not_hold_back_later_jobs_of_its_key(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    receive(store, "t1", AlertState.FIRING, severity=Severity.P2)
    receive(store, "t2", AlertState.FIRING, severity=Severity.P0)
    first, second = sorted(store.list_jobs(), key=lambda j: j["id"])
    store.discard_job(first["id"], clock.now)
    drain(worker_for(store, pd, clock), clock, seconds=5)
    assert [e.body["payload"]["severity"] for e in pd.events] == ["critical"]  # the discarded one never went
    states = [(store.get_job(j["id"]) or {})["state"] for j in (first, second)]
    assert states == ["discarded", "delivered"]


def test_a_retried_dead_job_is_delivered(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock)
    pd.fail(400, times=1, api="events")
    receive(store, "t", AlertState.FIRING)
    drain(worker, clock, seconds=5)
    [dead] = store.list_jobs(state="dead")
    assert dead["reason"] == "rejected" and pd.triggers_for("g1") == []
    store.retry_job(dead["id"], clock.now)
    drain(worker, clock, seconds=5)
    job = store.get_job(dead["id"]) or {}
    assert (job["state"], job["attempts"]) == ("delivered", 2)
    assert len(pd.triggers_for("g1")) == 1


def test_a_dead_trigger_is_not_retried_after_its_resolve_went_out(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    worker = worker_for(store, pd, clock)
    pd.fail(400, times=1, api="events")
    receive(store, "t", AlertState.FIRING)
    drain(worker, clock, seconds=5)
    [dead] = store.list_jobs(state="dead")
    receive(store, "r", AlertState.RESOLVED)  # a trigger was attempted: the recovery sends a resolve
    drain(worker, clock, seconds=5)
    assert [e.event_action for e in pd.events] == ["resolve"]
    with pytest.raises(Conflict, match="out of order"):
        store.retry_job(dead["id"], clock.now)  # it would re-open the incident after its resolve
    assert (store.get_job(dead["id"]) or {})["state"] == "dead"


# (kind, dedup key, state, time): a pending job's due time, or a sending job's lease end; relative to NOW.
NOW = T0.timestamp()


@pytest.mark.parametrize(("queued", "lane", "expected"), [
    pytest.param([], "events", None, id="nothing queued"),
    pytest.param([("event", "k", "pending", 10)], "events", 10, id="a page due later"),
    pytest.param([("event", "k", "pending", -5)], "events", -5, id="a page due already"),
    pytest.param([("event", "k", "pending", 30), ("event", "k", "pending", -100)], "events", 30,
                 id="a page held back behind its key's retry: the retry's time"),
    pytest.param([("event", "k", "sending", 20), ("event", "k", "pending", 0)], "events", 20,
                 id="a page held back behind one being sent: the end of that lease"),
    pytest.param([("event", "k", "sending", -1)], "events", -1, id="an expired lease: due again"),
    pytest.param([("event", "a", "pending", 30), ("event", "b", "pending", 40)], "events", 30,
                 id="the earliest of two keys"),
    pytest.param([("escalation_check", "k", "pending", 60), ("escalation_check", "k", "pending", 5)],
                 "follow-ups", 5, id="timers keep no order: each its own time"),
    pytest.param([("event", "k", "pending", 5), ("related_note", "k", "pending", 50)], "follow-ups", 50,
                 id="the follow-ups lane sees no events"),
    pytest.param([("event", "k", "pending", 5), ("related_note", "k", "pending", 50)], "events", 5,
                 id="the events lane sees only events"),
    pytest.param([("event", "k", "dead", 0), ("event", "k", "pending", 15)], "events", 15,
                 id="a dead job holds nothing back"),
])
def test_next_due_at_is_when_a_job_of_the_lane_may_next_be_leased(
        store: Store, queued: list[tuple[str, str, str, float]], lane: str, expected: float | None) -> None:
    for kind, key, state, at in queued:
        job_id = store.enqueue(kind, key, None, {}, NOW, NOW + at, action="trigger" if kind == "event" else "")
        if state != "pending":
            with store.engine.begin() as conn:
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                    state=state, lease_until=NOW + at if state == "sending" else None))
    kinds = {"only_kinds": ("event",)} if lane == "events" else {"exclude_kinds": ("event",)}
    assert store.next_due_at(NOW, **kinds) == (None if expected is None else NOW + expected)
