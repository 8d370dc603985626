"""The idle worker sleeps until woken (issue 18): with nothing to do, `incident-bridge worker` wakes about once per
fallback period (5 s) instead of polling several times a second, and work still starts at once, because whatever
makes work wakes it:

- a receipt wakes the stage (the doorbell, or LISTEN/NOTIFY), and the stage wakes the delivery lanes;
- a lane that handled a job wakes the other (a delivered page queues its set-up on the follow-ups lane);
- an operator's retry wakes the worker from the web process;
- on PostgreSQL, a job another replica's stage queued (no signal reaches this replica's lanes) goes out within the
  fallback, and a stage whose LISTEN connection was cut listens again instead of stopping.

Real processes on loopback; the fake PagerDuty at the edge; times from the fake's arrival log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.delivery.worker import IDLE_FALLBACK_SECONDS
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.wake import SIGNALLED_FALLBACK_SECONDS
from bridge.store import Store
from tests.support.e2e import POLICIES, SERVICES, USERS, datadog_payload, env_for, pd_incident, rules_dir
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.postgres import fresh_database
from tests.support.procstat import sample
from tests.support.server import BridgeProcess, WorkerProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

# Before: the stage looked every second and each lane every 0.5 s, and each look woke its thread (and the threads,
# waking together, woke each other contending for the interpreter's lock): 8 to 19 wake-ups a second on SQLite,
# measured as below. Now: about one per thread per fallback period, 0.6 a second.
MAX_IDLE_WAKEUPS_PER_SECOND = 2.0
# Longer than both fallbacks: a test that waits this long before acting shows that the worker was asleep.
ASLEEP = max(IDLE_FALLBACK_SECONDS, SIGNALLED_FALLBACK_SECONDS) + 1.0
EVENT = {"event_action": "trigger", "dedup_key": "", "payload": {"summary": "disk full", "source": "host-1",
                                                                 "severity": "critical"}}


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def test_an_idle_worker_wakes_at_most_twice_a_second(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path, bridge_env(tmp_path)).start()
    try:
        time.sleep(1.5)  # past its start: reconciliation queued, the first looks done
        before = sample(worker.pid)
        time.sleep(10.0)
        seconds, cpu, wakeups = sample(worker.pid).since(before)
    finally:
        worker.stop()
    print(f"idle worker: {wakeups} wake-ups and {cpu:.2f} s of CPU in {seconds:.1f} s")
    assert wakeups / seconds <= MAX_IDLE_WAKEUPS_PER_SECOND, (
        f"{wakeups} wake-ups in {seconds:.1f} s: the idle worker polls")


def test_after_a_long_idle_a_page_and_its_set_up_go_out_at_once(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
    try:
        time.sleep(ASLEEP)
        posted = time.time()
        response = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("idle-1", monitor="7301")))
        assert response.status_code == 202, response.text
        key = response.json()["alerts"][0]["dedup_key"]
        [trigger] = wait_for(lambda: pd.triggers_for(key), timeout=30)
        # The stage woke the events lane: the page did not wait for a lane's fallback.
        assert trigger.received_at - posted <= 1.0, f"paged {trigger.received_at - posted:.2f} s after the post"
        incident = wait_for(lambda: pd_incident(pd, key))
        # The events lane woke the follow-ups lane: the incident's set-up (its priority) came right after.
        [priority] = wait_for(lambda: pd.requests_to(f"/incidents/{incident.id}", "PUT"), timeout=30)[:1]
        assert priority.received_at - trigger.received_at <= 1.0, (
            f"set-up {priority.received_at - trigger.received_at:.2f} s after the page")
    finally:
        bridge.stop()


def test_an_operator_retry_of_a_dead_page_goes_out_at_once(tmp_path: Path, pd: FakePagerDuty) -> None:
    pd.fail(400, times=1, api="events", body={"status": "invalid event", "message": "Event object is invalid",
                                               "errors": ["a fault injected by the test"]})
    bridge = BridgeProcess(tmp_path, env_for(tmp_path, pd, rules_dir(tmp_path))).start()
    try:
        response = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("retry-1", monitor="7302")))
        key = response.json()["alerts"][0]["dedup_key"]
        [dead] = wait_for(lambda: bridge.get("/api/v1/jobs?state=dead").json()["jobs"], timeout=30)
        assert dead["dedup_key"] == key and pd.triggers_for(key) == []
        time.sleep(ASLEEP)
        retried = time.time()
        assert bridge.post(f"/api/v1/jobs/{dead['id']}/retry", b"").status_code == 200
        [trigger] = wait_for(lambda: pd.triggers_for(key), timeout=30)
        assert trigger.received_at - retried <= 1.0, f"sent {trigger.received_at - retried:.2f} s after the retry"
    finally:
        bridge.stop()


# -- PostgreSQL: several replicas on one database ------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def sent_at(store: Store, job_id: int) -> float | None:
    """When the worker recorded the job sent (dry-run: no routing key), as a timestamp."""
    job = store.get_job(job_id)
    if job is None or job["state"] not in ("dry_run", "delivered"):
        return None
    return datetime.fromisoformat(job["delivered_at"]).timestamp()


def events(store: Store) -> list[dict[str, Any]]:
    return [j for j in store.list_jobs() if j["kind"] == "event"]


def firing(event_id: str) -> tuple[Alert, Decision]:
    alert = Alert(source="test", source_event_id=event_id, received_at=datetime.now(UTC), title="disk full",
                  state=AlertState.FIRING, group_key=f"group-{event_id}")
    return alert, Decision(action=Action.PAGE, severity=Severity.P1, rule="r", reasons=("rule r matched",),
                           urgency=Severity.P1.urgency)


def test_on_postgresql_a_job_queued_by_another_replica_goes_out_within_the_fallback(tmp_path: Path,
                                                                                    pg_url: str) -> None:
    store = Store.open(pg_url)
    worker = WorkerProcess(tmp_path, bridge_env(tmp_path, BRIDGE_DATABASE_URL=pg_url)).start()
    try:
        time.sleep(1.0)  # asleep
        queued = time.time()
        # As another replica's stage queues a page: its own transaction, and no signal reaches this replica.
        job_id = store.enqueue("event", "other-replica", None, {**EVENT, "dedup_key": "other-replica"}, queued,
                               action="trigger")
        done = wait_for(lambda: sent_at(store, job_id), timeout=IDLE_FALLBACK_SECONDS + 10)
        assert done - queued <= IDLE_FALLBACK_SECONDS + 1.0, f"sent {done - queued:.2f} s after it was queued"
    finally:
        worker.stop()
        store.engine.dispose()


def test_on_postgresql_a_stage_whose_listen_connection_is_cut_listens_again(tmp_path: Path, pg_url: str) -> None:
    store = Store.open(pg_url)
    worker = WorkerProcess(tmp_path, bridge_env(tmp_path, BRIDGE_DATABASE_URL=pg_url)).start()
    try:
        with store.engine.connect() as conn:  # a failover, or an administrator ending idle sessions
            cut = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN %'")).scalars().all()
        assert cut == [True]
        time.sleep(ASLEEP)  # listening again by now, and asleep
        received = time.time()
        [entry] = store.journal([firing("after-the-cut")], [], datetime.now(UTC))  # notifies on commit
        decided = wait_for(lambda: store.journal_status()["undecided"] == 0 and events(store), timeout=30)
        assert time.time() - received <= 2.0, "the receipt waited for the fallback: the signal is not back"
        [job] = decided
        assert job["alert_id"] == entry.alert_id
        wait_for(lambda: sent_at(store, job["id"]), timeout=10)
        assert "pipeline stage: lost its wake-up signal" in worker.output()
        assert "Traceback" not in worker.output(), worker.output()
    finally:
        worker.stop()
        store.engine.dispose()
