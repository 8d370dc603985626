"""End to end: a restart with a week of incidents. Reconciliation with PagerDuty (one REST lookup per incident)
runs in the background on the follow-ups lane: a new alert pages at once, the new incident's follow-ups are not
starved behind the lookups, and a pass stopped mid-way resumes where it stopped.

The incidents are written straight into the bridge's database before it starts (with their triggers delivered,
which is what reconciliation looks up) and opened at the PagerDuty fake, which answers every REST request late.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.store import Store
from tests.support.e2e import POLICIES, SERVICES, USERS, datadog_payload, env_for, pd_incident, rules_dir
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.seeding import seed_paged_incidents
from tests.support.server import BridgeProcess, wait_for

pytestmark = pytest.mark.integration

# The measured problem (issue 13): 1,293 incidents of the last 7 days, PagerDuty's REST API answering in 100 ms.
INCIDENTS = 1300
REST_LATENCY = 0.1
DAY_AGO = time.time() - 86400


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def lookups(pd: FakePagerDuty, keys: Collection[str]) -> Counter[str]:
    """How often each of `keys` was looked up by dedup key (`GET /incidents?incident_key=`) and answered."""
    wanted = set(keys)
    return Counter(key for r in pd.requests_to("/incidents", "GET")
                   if r.status == 200 and (key := (r.query.get("incident_key") or [""])[0]) in wanted)


def reconcile_status(bridge: BridgeProcess) -> dict[str, Any]:
    return bridge.get("/api/v1/pipeline").json()["reconcile"] or {}


def seeded_bridge(tmp_path: Path, pd: FakePagerDuty, count: int, latency: float) -> tuple[dict[str, str], list[str]]:
    """The environment of a bridge whose database has `count` open incidents paged a day ago, open in PagerDuty
    too, and a PagerDuty REST API answering `latency` seconds late; and the incidents' dedup keys."""
    env = env_for(tmp_path, pd, rules_dir(tmp_path))
    store = Store.open(env["BRIDGE_DATABASE_URL"])
    keys = seed_paged_incidents(store, count, paged_at=DAY_AGO)
    store.engine.dispose()
    pd.seed_open_incidents(keys)
    pd.latency(latency, api="rest")
    return env, keys


def test_after_a_restart_with_1300_open_incidents_a_new_alert_pages_within_2s(tmp_path: Path,
                                                                               pd: FakePagerDuty) -> None:
    env, keys = seeded_bridge(tmp_path, pd, INCIDENTS, REST_LATENCY)
    bridge = BridgeProcess(tmp_path, env).start()
    try:
        posted = time.time()
        response = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("after-restart", monitor="7101")))
        assert response.status_code == 202, response.text
        key = response.json()["alerts"][0]["dedup_key"]
        [trigger] = wait_for(lambda: pd.triggers_for(key), timeout=30)
        assert trigger.received_at - posted <= 2.0, f"paged {trigger.received_at - posted:.2f} s after the post"

        # Reconciliation runs meanwhile, in the background.
        wait_for(lambda: lookups(pd, keys), timeout=10)
        assert "reconciliation with PagerDuty: new pass 1 over 1300 incident(s)" in bridge.output()
        status = wait_for(lambda: (lambda s: s if s["remaining"] < INCIDENTS else None)(reconcile_status(bridge)))
        assert status["state"] == "running" and status["looked_up"] == INCIDENTS - status["remaining"]

        # The new incident's set-up (priority first) goes before the next slice of lookups: it comes within
        # seconds (a slice in hand, then its own requests, 100 ms each), while the pass has minutes to go.
        incident = wait_for(lambda: pd_incident(pd, key))
        [priority_set] = wait_for(lambda: [r for r in pd.requests_to(f"/incidents/{incident.id}", "PUT")
                                           if r.status == 200], timeout=20)
        assert pd.incident(incident.id).priority_id == "PPRI001"
        assert priority_set.received_at - trigger.received_at <= 10.0
        assert sum(lookups(pd, keys).values()) < INCIDENTS / 2
        assert all(n == 1 for n in lookups(pd, keys).values())
    finally:
        bridge.kill()


def test_a_pass_stopped_mid_way_resumes_at_its_cursor_and_a_finished_one_is_not_redone(tmp_path: Path,
                                                                                        pd: FakePagerDuty) -> None:
    env, keys = seeded_bridge(tmp_path, pd, 200, 0.02)
    first = BridgeProcess(tmp_path, env).start()
    try:
        wait_for(lambda: sum(lookups(pd, keys).values()) >= 60, timeout=30)
    finally:
        first.stop()  # SIGTERM: the slice in hand finishes and hands over to the next
    stopped_at = sum(lookups(pd, keys).values())
    assert stopped_at < len(keys)

    second = BridgeProcess(tmp_path, env).start()
    try:
        status = wait_for(lambda: (lambda s: s if s.get("state") == "finished" else None)(reconcile_status(second)),
                          timeout=60)
        assert "reconciliation with PagerDuty: resuming pass 1 after incident" in second.output()
        assert lookups(pd, keys) == Counter(keys)  # every incident looked up once, across the restart
        assert (status["pass"], status["looked_up"], status["remaining"]) == (1, len(keys), 0)
    finally:
        second.stop()

    # Started again right after the pass finished: no new pass; the next is scheduled (BRIDGE_RECONCILE_INTERVAL).
    third = BridgeProcess(tmp_path, env).start()
    try:
        wait_for(lambda: "reconciliation with PagerDuty: pass 2 is scheduled for" in third.output())
        status = reconcile_status(third)
        assert (status["pass"], status["state"]) == (1, "finished") and status["next_pass_at"]
        assert lookups(pd, keys) == Counter(keys)
    finally:
        third.kill()
