"""Self-monitoring on PostgreSQL: the unit tests' guarantees (tests/unit/delivery/test_watchdog.py) run here
unchanged, and two replicas' watchdogs, each with its own engine, send one trigger and one resolve between them.
Skipped without BRIDGE_TEST_POSTGRES_URL, failed under CI=true (tests/support/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.health import DELIVERY
from bridge.store import Store
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.postgres import fresh_database
from tests.unit.delivery import test_watchdog as watchdog_cases

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    opened = Store.open(pg_url)
    yield opened
    opened.engine.dispose()


@pytest.mark.parametrize("case", [
    watchdog_cases.test_a_due_job_ages_from_its_due_time,
    watchdog_cases.test_a_timer_is_not_pending_before_its_time,
    watchdog_cases.test_a_failing_job_keeps_its_age_through_retries,
    watchdog_cases.test_a_job_put_off_on_purpose_counts_from_its_new_time,
    watchdog_cases.test_a_claim_left_by_a_dead_process_expires,
], ids=lambda f: f.__name__.removeprefix("test_"))
def test_store_cases(store: Store, case: object) -> None:
    case(store)  # type: ignore[operator]


def test_two_replicas_send_one_trigger_and_one_resolve(pg_url: str, pd: FakePagerDuty) -> None:
    first, second = Store.open(pg_url), Store.open(pg_url)
    try:
        clock = watchdog_cases.Clock()
        job = watchdog_cases.event(first, watchdog_cases.T0)
        dogs = [watchdog_cases.watchdog(s, pd, clock) for s in (first, second)]
        clock.now += 400
        for _ in range(3):
            for dog in dogs:
                dog.round()
        assert len(pd.triggers_for("incident-bridge:self:delivery", routing_key=watchdog_cases.FALLBACK_KEY)) == 1
        assert second.self_pages()[DELIVERY]["state"] == "open"
        first.lease_job(clock.now, 30.0, "test:1")
        first.job_delivered(job, clock.now, dry_run=False, response={})
        for _ in range(2):
            for dog in reversed(dogs):
                dog.round()
        resolves = [e for e in pd.events if e.event_action == "resolve"]
        assert len(resolves) == 1
        for dog in dogs:
            dog.close()
    finally:
        first.engine.dispose()
        second.engine.dispose()
