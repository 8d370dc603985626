"""Self-monitoring on a real store (SQLite) with PagerDuty faked at the HTTP edge and a manual clock: what counts as
a pending job (due and not done; retries of failed attempts keep their age, jobs put off on purpose do not), and
the watchdog's page to the fallback key: triggered once however many watchdogs look, retried when the fallback
key's PagerDuty fails, resolved once when healthy again."""

from __future__ import annotations

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.watchdog import Watchdog, check, self_event
from bridge.health import DELIVERY, PIPELINE, Stall
from bridge.store import JobKind, Store
from tests.support.fakes.pagerduty import FakePagerDuty

T0 = 1_800_000_000.0
FALLBACK_KEY = "fa11bac0fa11bac0fa11bac0fa11bac0"
THRESHOLD = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def event(store: Store, now: float, due: float | None = None, kind: str = JobKind.EVENT) -> int:
    return store.enqueue(kind, "dd:1", None, {"event_action": "trigger", "dedup_key": "dd:1"}, now, due,
                         action="trigger")


def watchdog(store: Store, pd: FakePagerDuty, clock: Clock) -> Watchdog:
    settings = Settings(events_url=pd.url, stall_threshold_seconds=THRESHOLD, fallback_routing_key=Secret(FALLBACK_KEY))
    return Watchdog(store, settings, clock=clock, client=EventsClient(FALLBACK_KEY, pd.url, timeout=2.0))


def test_a_due_job_ages_from_its_due_time(store: Store) -> None:
    assert store.oldest_due_job(T0) is None
    job = event(store, T0)
    assert store.oldest_due_job(T0 + 10) == (T0, job)
    assert check(store, THRESHOLD, T0 + 300) == []
    assert [s.what for s in check(store, THRESHOLD, T0 + 301)] == [DELIVERY]


def test_a_timer_is_not_pending_before_its_time(store: Store) -> None:
    event(store, T0, due=T0 + 900, kind=JobKind.ESCALATION_CHECK)
    assert store.oldest_due_job(T0 + 899) is None
    assert check(store, THRESHOLD, T0 + 899) == []
    assert store.oldest_due_job(T0 + 1000) is not None
    assert check(store, THRESHOLD, T0 + 1201)[0].age == pytest.approx(301)


def test_a_failing_job_keeps_its_age_through_retries(store: Store) -> None:
    job = event(store, T0)
    for n in range(1, 5):  # PagerDuty answers 500 again and again; each retry is due later
        leased = store.lease_job(T0 + n * 100, 30.0, "test:1")
        assert leased is not None and leased["id"] == job
        store.job_failed(job, T0 + n * 100, error="500", reason="server_error", retry_at=T0 + n * 100 + 60)
    assert store.oldest_due_job(T0 + 410) == (T0, job)
    assert [s.what for s in check(store, THRESHOLD, T0 + 410)] == [DELIVERY]


def test_a_job_put_off_on_purpose_counts_from_its_new_time(store: Store) -> None:
    job = event(store, T0)
    store.lease_job(T0 + 200, 30.0, "test:1")
    store.release_job(job, T0 + 200, T0 + 600)  # no REST budget, or the per-minute event limit
    assert store.oldest_due_job(T0 + 500) is None
    assert store.oldest_due_job(T0 + 700) == (T0 + 600, job)


def test_delivered_jobs_are_not_pending(store: Store) -> None:
    job = event(store, T0)
    store.lease_job(T0, 30.0, "test:1")
    store.job_delivered(job, T0 + 1, dry_run=False, response={})
    assert store.oldest_due_job(T0 + 3600) is None


def test_one_trigger_across_watchdogs_then_one_resolve(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    job = event(store, T0)
    first, second = watchdog(store, pd, clock), watchdog(store, pd, clock)
    clock.now = T0 + 100
    assert first.round() == [] and pd.events == []
    clock.now = T0 + 400
    for _ in range(3):
        assert [s.what for s in first.round()] == [DELIVERY]
        assert [s.what for s in second.round()] == [DELIVERY]
    triggers = pd.triggers_for("incident-bridge:self:delivery", routing_key=FALLBACK_KEY)
    assert len(triggers) == 1
    assert "delivery: the oldest pending outbox job has waited 6m40s" in (triggers[0].summary or "")
    assert store.self_pages()[DELIVERY]["state"] == "open"
    # Delivered: healthy again; one resolve, whichever watchdog looks first.
    store.lease_job(clock.now, 30.0, "test:1")
    store.job_delivered(job, clock.now, dry_run=False, response={})
    clock.now += 10
    second.round()
    first.round()
    resolves = [e for e in pd.events if e.routing_key == FALLBACK_KEY and e.event_action == "resolve"]
    assert len(resolves) == 1 and resolves[0].dedup_key == "incident-bridge:self:delivery"
    assert pd.alert("incident-bridge:self:delivery", FALLBACK_KEY).open is False  # type: ignore[union-attr]
    assert store.self_pages()[DELIVERY]["state"] == "resolved"
    pd.assert_no_invalid_requests()


def test_a_failed_fallback_send_is_tried_again(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    event(store, T0)
    dog = watchdog(store, pd, clock)
    clock.now = T0 + 400
    pd.fail(500, times=1, api="events", routing_key=FALLBACK_KEY)
    dog.round()
    assert pd.triggers_for("incident-bridge:self:delivery") == []
    assert store.self_pages()[DELIVERY]["state"] == "resolved"  # not open: the next round sends it
    dog.round()
    assert len(pd.triggers_for("incident-bridge:self:delivery", routing_key=FALLBACK_KEY)) == 1


def test_a_claim_left_by_a_dead_process_expires(store: Store) -> None:
    assert store.claim_self_page(PIPELINE, "trigger", T0, 15.0, "host:1")
    assert not store.claim_self_page(PIPELINE, "trigger", T0 + 5, 15.0, "host:2")  # being sent by host:1
    assert store.claim_self_page(PIPELINE, "trigger", T0 + 16, 15.0, "host:2")  # host:1 died mid-send
    store.finish_self_page(PIPELINE, "trigger", T0 + 17, sent=True, detail="x")
    assert not store.claim_self_page(PIPELINE, "trigger", T0 + 18, 15.0, "host:2")  # open: sent once
    assert not store.claim_self_page(DELIVERY, "resolve", T0, 15.0, "host:1")  # never paged: nothing to resolve


def test_without_a_fallback_key_nothing_is_sent(store: Store, pd: FakePagerDuty) -> None:
    clock = Clock()
    event(store, T0)
    dog = Watchdog(store, Settings(events_url=pd.url, stall_threshold_seconds=THRESHOLD), clock=clock)
    clock.now = T0 + 400
    assert [s.what for s in dog.round()] == [DELIVERY]
    assert pd.events == [] and store.self_pages() == {}


def test_the_page_says_what_and_how_long() -> None:
    body = self_event(DELIVERY, "trigger", Stall(DELIVERY, 400, 300), "bridge-1")
    assert body["dedup_key"] == "incident-bridge:self:delivery"
    assert body["payload"]["severity"] == "critical" and body["payload"]["source"] == "bridge-1"
    assert body["payload"]["custom_details"]["age_seconds"] == 400
    assert self_event(DELIVERY, "resolve", None, "bridge-1") == {"event_action": "resolve",
                                                                  "dedup_key": "incident-bridge:self:delivery"}
