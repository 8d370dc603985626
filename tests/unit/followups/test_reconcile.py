"""Reconciliation with PagerDuty in the background: follow-up jobs of a slice each on the follow-ups lane, behind
the pages and every other due follow-up, within a share of the REST budget, resumed at the cursor after a restart.
Real store (SQLite), worker, follow-ups and REST client; PagerDuty faked at the HTTP edge (every request checked
against the published schema); a manual clock."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.pagerduty_rest import PagerDutyRest
from bridge.delivery.worker import DeliveryWorker, Lane
from bridge.errors import ConfigError
from bridge.followups import FollowUps
from bridge.followups.reconcile import SLICE, pass_status
from bridge.model import Alert, AlertState, Link
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.engine import evaluate
from bridge.rules.holder import RulesetHolder
from bridge.store import JobKind, Store
from tests.support.e2e import POLICIES, USERS  # the account the shipped rules/roles.yaml names
from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, ROUTING_KEY, FakePagerDuty, ManualClock
from tests.support.seeding import seed_paged_incidents
from tests.support.shared import copy_shipped_rules

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
HOUR_AGO = T0 - 3600


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES) as fake:
        yield fake
        fake.assert_no_invalid_requests()


class Worker:
    """The worker process of a bridge (follow-ups, REST client, delivery worker) on a store, as `run_worker`
    builds it; a new one over the same store is a restart."""

    def __init__(self, store: Store, holder: RulesetHolder, pd: FakePagerDuty, clock: Clock, *,
                 requests_per_minute: int = 960, interval: float = 600.0, rest: bool = True) -> None:
        self.rest = PagerDutyRest(Settings(api_token=Secret(API_KEY), api_url=pd.url, pd_from=FROM_EMAIL),
                                  verify=pd.ssl_context, clock=clock, rate_limit_retry_sleep=0.005,
                                  requests_per_minute=requests_per_minute) if rest else None
        settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url, reconcile_interval_seconds=interval)
        self.followups = FollowUps(store, settings, holder, self.rest, clock=clock)
        self.worker = DeliveryWorker(store, settings,
                                     client=EventsClient(ROUTING_KEY, pd.url, timeout=2.0, verify=pd.ssl_context),
                                     clock=clock, out=io.StringIO(), retry_multiplier=1.0, retry_max=10.0,
                                     followups=self.followups)

    def follow_ups(self, jobs: int = 10_000) -> int:
        """Run up to `jobs` due follow-ups, one at a time as the lane does; returns how many ran."""
        ran = 0
        while ran < jobs and self.worker.run_once(Lane.FOLLOW_UPS):
            ran += 1
        return ran

    def close(self) -> None:
        self.worker.close()
        if self.rest is not None:
            self.rest.close()


@pytest.fixture
def holder(tmp_path: Path) -> RulesetHolder:
    holder = RulesetHolder(copy_shipped_rules(tmp_path / "rules"), None)
    holder.load()
    return holder


def lookups(pd: FakePagerDuty, answered: int | None = 200) -> Counter[str]:
    """How often each dedup key was looked up (`GET /incidents?incident_key=`), counting answers of `answered`."""
    return Counter(r.query["incident_key"][0] for r in pd.requests_to("/incidents", "GET")
                   if "incident_key" in r.query and (answered is None or r.status == answered))


def reconcile_jobs(store: Store) -> list[dict[str, Any]]:
    return [j for j in store.list_jobs(limit=10_000) if j["kind"] == JobKind.RECONCILE]


def page(store: Store, holder: RulesetHolder, clock: Clock, event_id: str, monitor: str) -> dict[str, Any]:
    """A P0 Datadog alert of the checkout monitor, decided by the shipped rules and received now."""
    now = datetime.fromtimestamp(clock.now, tz=UTC)
    alert = Alert(source="datadog", source_event_id=event_id, received_at=now, title="Checkout: users cannot pay",
                  state=AlertState.FIRING, group_key=f"datadog:{monitor}:service:checkout", service="checkout",
                  dimensions={"users_affected_pct": 27.4}, fields={"monitor_id": monitor},
                  links=(Link(f"https://app.datadoghq.com/monitors/{monitor}", "Datadog monitor"),))
    ruleset = holder.current
    return accept_and_decide(store, [(alert, evaluate(alert, ruleset, now))], [], now, ruleset)[0].to_json()


def test_a_pass_goes_slice_by_slice_and_a_restart_resumes_at_the_cursor(store: Store, holder: RulesetHolder,
                                                                        pd: FakePagerDuty) -> None:
    clock = Clock()
    keys = seed_paged_incidents(store, 2 * SLICE + 10, paged_at=HOUR_AGO)
    pd.seed_open_incidents(keys)
    first = Worker(store, holder, pd, clock)
    assert first.followups.queue_reconciliation() == "new pass 1 over 50 incident(s) opened in the last 7 days"
    assert first.follow_ups(jobs=2) == 2
    assert sum(lookups(pd).values()) == 2 * SLICE
    [running] = [j for j in reconcile_jobs(store) if j["state"] == "pending"]
    assert running["payload"]["cursor"] == 2 * SLICE and running["payload"]["looked_up"] == 2 * SLICE
    first.close()

    # A restart mid-pass resumes it: the remaining incidents only, each looked up once.
    clock.now += 30
    second = Worker(store, holder, pd, clock)
    assert second.followups.queue_reconciliation() == "resuming pass 1 after incident 40 (10 incident(s) left)"
    second.follow_ups()
    assert lookups(pd) == Counter(keys)
    status = pass_status(store)
    assert status is not None
    assert {k: status[k] for k in ("pass", "state", "remaining", "looked_up", "repaired")} == {
        "pass": 1, "state": "finished", "remaining": 0, "looked_up": len(keys), "repaired": 0}
    # Nothing drifted: every incident is still open here.
    assert {i["status"] for i in store.list_incidents(limit=1000)} == {"open"}

    # The finished pass queued the next, due an interval later: a restart meanwhile starts none.
    finished_at = clock.now
    clock.now += 60
    due = datetime.fromtimestamp(finished_at + 600, tz=UTC).isoformat(timespec="seconds")
    assert second.followups.queue_reconciliation() == (
        f"pass 2 is scheduled for {due} (every 600 s, BRIDGE_RECONCILE_INTERVAL)")
    assert second.follow_ups() == 0 and sum(lookups(pd).values()) == len(keys)
    status = pass_status(store)
    assert status is not None and (status["pass"], status["state"], status["looked_up"]) == (1, "finished", 50)
    assert status["next_pass_at"] == due
    # A worker that keeps running reconciles again, without a restart: an incident opened meanwhile is in the pass.
    [late] = seed_paged_incidents(store, 1, paged_at=clock.now, prefix="late")
    pd.seed_open_incidents([late])
    clock.now += 600
    second.follow_ups()
    assert lookups(pd) == Counter(keys * 2 + [late])
    status = pass_status(store)
    assert status is not None and (status["pass"], status["state"], status["looked_up"]) == (2, "finished", 51)
    second.close()


@pytest.mark.parametrize(("last", "ago", "interval", "expected"), [
    (None, 0, 600, "new pass 1 over 3 incident(s)"),
    ("pending", 0, 600, "resuming pass 1 after incident 0 (3 incident(s) left)"),
    ("sending", 0, 600, "resuming pass 1 after incident 0 (3 incident(s) left)"),
    ("delivered", 100, 600, "no new pass: pass 1 finished 100 s ago"),
    ("delivered", 600, 600, "new pass 2 over 3 incident(s)"),
    ("delivered", 0, 0, "new pass 2 over 3 incident(s)"),
    ("dead", 100, 600, "no new pass: pass 1 stopped (dead job 4) 100 s ago"),
    ("dead", 700, 600, "new pass 2 over 3 incident(s)"),
    ("discarded", 700, 600, "new pass 2 over 3 incident(s)"),
], ids=["first", "resume-pending", "resume-sending", "recent", "due", "interval-0", "dead-recent", "dead-due",
        "discarded"])
def test_what_a_start_queues(store: Store, holder: RulesetHolder, pd: FakePagerDuty, last: str | None, ago: float,
                             interval: float, expected: str) -> None:
    clock = Clock()
    seed_paged_incidents(store, 3, paged_at=HOUR_AGO)
    worker = Worker(store, holder, pd, clock, interval=interval)
    if last is not None:
        worker.followups.queue_reconciliation()
        [job] = reconcile_jobs(store)
        if last == "sending":
            assert store.lease_job(clock.now, 60.0, "other-host:1")
        elif last == "delivered":
            store.job_delivered(job["id"], clock.now, dry_run=False, response=None)
        elif last == "dead":
            store.job_failed(job["id"], clock.now, error="refused", reason="misconfigured", retry_at=None)
        elif last == "discarded":
            store.discard_job(job["id"], clock.now)
    clock.now += ago
    assert (worker.followups.queue_reconciliation() or "").startswith(expected)
    assert pd.requests == []  # deciding looks nothing up
    worker.close()


def test_without_the_rest_api_there_is_no_pass(store: Store, holder: RulesetHolder, pd: FakePagerDuty) -> None:
    seed_paged_incidents(store, 3, paged_at=HOUR_AGO)
    worker = Worker(store, holder, pd, Clock(), rest=False)
    assert worker.followups.queue_reconciliation() is None
    assert reconcile_jobs(store) == [] and pass_status(store) is None
    worker.close()


def test_due_follow_ups_go_before_the_next_slice(store: Store, holder: RulesetHolder, pd: FakePagerDuty) -> None:
    clock = Clock()
    keys = seed_paged_incidents(store, 3 * SLICE, paged_at=HOUR_AGO)
    pd.seed_open_incidents(keys)
    worker = Worker(store, holder, pd, clock)
    worker.followups.queue_reconciliation()
    assert worker.follow_ups(jobs=1) == 1  # one slice
    # A new P0 pages meanwhile; its set-up (priority, responders, notes) is due now, and so is the next slice.
    opened = page(store, holder, clock, "new-1", "7001")
    assert worker.worker.run_once(Lane.EVENTS)
    [incident] = pd.incidents_for(opened["dedup_key"])
    setup = [j for j in store.list_jobs() if j["kind"] == JobKind.INCIDENT_SETUP]
    assert [j["state"] for j in setup] == ["pending"]
    assert worker.follow_ups(jobs=1) == 1
    assert store.get_job(setup[0]["id"])["state"] == "delivered"  # type: ignore[index]
    assert pd.incident(incident.id).priority_id == "PPRI001"
    seeded = set(keys)
    assert sum(n for key, n in lookups(pd).items() if key in seeded) == SLICE  # none since the first slice
    worker.follow_ups()
    # The pass looked each seeded incident up once, and not the new one (opened after it started): the one
    # lookup of its key is the set-up's own.
    assert lookups(pd) == Counter(keys) + Counter([opened["dedup_key"]])
    worker.close()


def test_a_pass_leaves_a_quarter_of_the_rest_budget_to_the_other_follow_ups(store: Store, holder: RulesetHolder,
                                                                            pd: FakePagerDuty) -> None:
    clock = Clock()
    keys = seed_paged_incidents(store, 60, paged_at=HOUR_AGO)
    pd.seed_open_incidents(keys)
    worker = Worker(store, holder, pd, clock, requests_per_minute=40)
    worker.followups.queue_reconciliation()
    worker.follow_ups()
    assert sum(lookups(pd).values()) == 30  # 40 a minute, 10 of them left to the others
    assert worker.rest is not None and worker.rest.requests_left() == (10, 40)
    [waiting] = [j for j in reconcile_jobs(store) if j["state"] == "pending"]
    assert waiting["payload"]["cursor"] == 30
    clock.now += 30
    assert worker.follow_ups() == 0  # the budget frees a minute after the lookups
    clock.now += 30
    worker.follow_ups()
    assert lookups(pd) == Counter(keys)
    assert pass_status(store)["state"] == "finished"  # type: ignore[index]
    assert store.list_jobs(state="dead") == []
    worker.close()


def test_pagerduty_refusing_mid_slice_hands_over_at_the_cursor(store: Store, holder: RulesetHolder) -> None:
    clock = Clock()
    pd_clock = ManualClock()
    with FakePagerDuty(rest_rate_limit_per_minute=25, clock=pd_clock) as pd:
        keys = seed_paged_incidents(store, 2 * SLICE, paged_at=HOUR_AGO)
        pd.seed_open_incidents(keys)
        worker = Worker(store, holder, pd, clock)
        worker.followups.queue_reconciliation()
        worker.follow_ups()
        # PagerDuty answered 429 at the 26th lookup: the second slice stopped after 5 and handed over.
        assert sum(lookups(pd).values()) == 25
        [waiting] = [j for j in reconcile_jobs(store) if j["state"] == "pending"]
        assert (waiting["payload"]["cursor"], waiting["attempts"]) == (25, 0)
        # Still refused: a slice that made no progress is retried with the backoff of any follow-up.
        clock.now += 1
        worker.follow_ups()
        [waiting] = [j for j in reconcile_jobs(store) if j["state"] == "pending"]
        assert (waiting["payload"]["cursor"], waiting["attempts"]) == (25, 1)
        pd_clock.advance(60)
        clock.now += 60
        worker.follow_ups()
        assert lookups(pd) == Counter(keys)  # each answered once: nothing looked up twice
        assert lookups(pd, answered=429)  # what was refused was asked again
        assert pass_status(store)["state"] == "finished"  # type: ignore[index]
        worker.close()
        pd.assert_no_invalid_requests()


# What the pass does with one incident: (here, in PagerDuty, an event of ours on its way) -> looked up, the status
# here afterwards, the resolves queued, and the timeline entry.
REPAIRS = [
    ("open", "open", None, True, "open", 0, None),
    ("open", "absent", None, True, "resolved", 0, "resolved in PagerDuty (found by reconciliation pass 1)"),
    ("resolved", "open", None, True, "resolved", 1,
     "resolve re-sent: PagerDuty still had the incident open (found by reconciliation pass 1)"),
    ("resolved", "absent", None, True, "resolved", 0, None),
    # A re-page on its way: PagerDuty's view is about to change; the next pass compares.
    ("open", "absent", "trigger", False, "open", 0, None),
    # Our resolve is queued: sending another would be a duplicate.
    ("resolved", "open", "resolve", False, "resolved", 1, None),
]


@pytest.mark.parametrize(("here", "there", "on_its_way", "looked_up", "after", "resolves", "timeline"), REPAIRS,
                         ids=["in-step", "resolved-there", "resolve-lost", "both-resolved", "trigger-queued",
                              "resolve-queued"])
def test_what_a_pass_repairs(store: Store, holder: RulesetHolder, pd: FakePagerDuty, here: str, there: str,
                             on_its_way: str | None, looked_up: bool, after: str, resolves: int,
                             timeline: str | None) -> None:
    clock = Clock()
    [key] = seed_paged_incidents(store, 1, paged_at=HOUR_AGO, status=here)
    if there == "open":
        pd.seed_open_incidents([key])
    if on_its_way is not None:
        store.enqueue(JobKind.EVENT, key, 1, {"event_action": on_its_way, "dedup_key": key}, clock.now,
                      action=on_its_way, priority=0)
    worker = Worker(store, holder, pd, clock)
    worker.followups.queue_reconciliation()
    worker.follow_ups()
    assert sum(lookups(pd).values()) == int(looked_up)
    incident = store.incident_row(1)
    assert incident is not None and incident["status"] == after
    queued = [j for j in store.list_jobs() if j["kind"] == JobKind.EVENT and j["action"] == "resolve"]
    assert len(queued) == resolves and all(j["state"] == "pending" for j in queued)
    found = [e["description"] for e in store.incident_timeline(1) if "reconciliation" in e["description"]]
    assert found == ([timeline] if timeline else [])
    if timeline and after == "resolved" and here == "open":
        # Resolved here as any resolution is: its checklist note and post-mortem draft follow.
        assert {j["kind"] for j in store.list_jobs()} >= {JobKind.RESOLUTION_NOTE, JobKind.POSTMORTEM}
    if resolves and on_its_way is None:
        assert worker.worker.run_once(Lane.EVENTS)
        assert pd.incidents_for(key)[0].status == "resolved"
    worker.close()


@pytest.mark.parametrize(("value", "seconds"), [("", 600.0), ("90", 90.0), ("10m", 600.0), ("1h30m", 5400.0),
                                                ("0", 0.0)])
def test_the_interval_setting(value: str, seconds: float) -> None:
    assert Settings.from_env({"BRIDGE_RECONCILE_INTERVAL": value}).reconcile_interval_seconds == seconds


def test_a_bad_interval_is_one_line_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"BRIDGE_RECONCILE_INTERVAL='soon': 'soon' is not a duration"):
        Settings.from_env({"BRIDGE_RECONCILE_INTERVAL": "soon"})


def test_a_resolve_pagerduty_dropped_is_sent_again_once(store: Store, holder: RulesetHolder,
                                                        pd: FakePagerDuty) -> None:
    """A maintenance window: the Events API took our resolve (202) and dropped it, so PagerDuty still has the
    incident open. The pass sends the resolve again, once, and the next pass finds nothing left to repair."""
    clock = Clock()
    [key] = seed_paged_incidents(store, 1, paged_at=HOUR_AGO, status="resolved")
    resolve = store.enqueue(JobKind.EVENT, key, 1, {"event_action": "resolve", "dedup_key": key}, HOUR_AGO + 60,
                            action="resolve", priority=0)
    assert store.lease_job(clock.now, 30.0, "test:1") is not None
    store.job_delivered(resolve, HOUR_AGO + 61, dry_run=False, response={"status": "success"})
    pd.seed_open_incidents([key])  # the resolve never reached the incident
    worker = Worker(store, holder, pd, clock, interval=60.0)
    worker.followups.queue_reconciliation()
    worker.follow_ups()
    queued = [j for j in store.list_jobs() if j["action"] == "resolve" and j["state"] == "pending"]
    assert len(queued) == 1
    notes = [e["description"] for e in store.incident_timeline(1) if "reconciliation" in e["description"]]
    assert notes == ["resolve re-sent: PagerDuty still had the incident open after our resolve was delivered (a "
                     "maintenance window drops resolves) (found by reconciliation pass 1)"]
    assert worker.worker.run_once(Lane.EVENTS)
    assert pd.incidents_for(key)[0].status == "resolved"
    clock.now += 120  # the next pass: in step, nothing more is sent
    worker.followups.queue_reconciliation()
    worker.follow_ups()
    assert [e.event_action for e in pd.events if e.dedup_key == key] == ["resolve"]
    worker.close()
