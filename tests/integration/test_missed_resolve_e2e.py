"""End to end: a real bridge with DD_API_KEY/DD_APP_KEY. A Datadog monitor group went Alert -> No Data -> OK, so no
recovery webhook ever comes; the worker's missed-resolve round asks the loopback Datadog fake for the group's
state and, once it is OK, resolves the incident (the resolve reaches the PagerDuty fake) with the reason on its
timeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import datadog_payload, post_alert
from tests.support.fakes.datadog import API_KEY, APP_KEY, FakeDatadog
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import ROUTING_KEY, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

MONITOR = 183664512


@pytest.fixture
def datadog() -> Iterator[FakeDatadog]:
    with FakeDatadog() as fake:
        fake.add_monitor({"id": MONITOR, "multi": True})
        yield fake
        fake.assert_no_invalid_requests()


def test_a_group_back_to_ok_without_a_recovery_is_resolved(tmp_path: Path, pagerduty: FakePagerDuty,
                                                          datadog: FakeDatadog) -> None:
    bridge = BridgeProcess(tmp_path, bridge_env(
        tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url, DD_API_KEY=API_KEY,
        DD_APP_KEY=APP_KEY, DATADOG_API_URL=datadog.url, BRIDGE_MISSED_RESOLVE_AFTER="1s",
        BRIDGE_RECONCILE_INTERVAL="1s")).start()
    try:
        datadog.set_group_state(MONITOR, "env:prod,service:checkout", "No Data")
        item = post_alert(bridge, datadog_payload("7001"))["alerts"][0]
        key, incident_id = item["dedup_key"], item["incident_id"]
        wait_for(lambda: pagerduty.triggers_for(key), timeout=30)
        # Rounds come and go while the group has no data: the incident stays open.
        wait_for(lambda: len([r for r in datadog.requests_to(f"/api/v1/monitor/{MONITOR}") if r.status == 200]) >= 2,
                 timeout=30)
        assert bridge.get(f"/api/v1/incidents/{incident_id}").json()["status"] == "open"
        datadog.set_group_state(MONITOR, "env:prod,service:checkout", "OK")
        wait_for(lambda: [e for e in pagerduty.events if e.dedup_key == key and e.event_action == "resolve"],
                 timeout=30)
        incident = bridge.get(f"/api/v1/incidents/{incident_id}").json()
        assert incident["status"] == "resolved"
        assert any(e["description"].startswith(f"resolved: Datadog reports monitor {MONITOR} group "
                                               "env:prod,service:checkout OK, and no recovery came")
                   for e in incident["timeline"])
        assert "missed resolves (Datadog monitor states): round 1 queued" in bridge.output()
        assert API_KEY not in bridge.output() and APP_KEY not in bridge.output()
    finally:
        bridge.kill()
