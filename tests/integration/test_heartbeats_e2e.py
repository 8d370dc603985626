"""End to end: a silent source, with the real `serve` (web and worker processes) and the PagerDuty fake.

Guarantees, not code paths:
- a heartbeat never seen does not page on a fresh install: its clock starts when the bridge starts;
- when no alert matching it arrives within its interval, ONE incident is triggered, keyed
  `incident-bridge:heartbeat:<name>`, at P1 (the account's priority for it, the roles of a declared P1), titled
  "No alerts from <source> since <time>";
- a restart while it is still missed pages nobody again;
- the Watchdog arriving again resolves it, and the API shows the heartbeat ok.

The heartbeat's interval is 10 s (`rules lint`'s minimum) and the worker looks every 0.5 s
(BRIDGE_HEARTBEAT_CHECK_INTERVAL), so the page comes 10-11 s after the start; every wait is bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import POLICIES, SERVICES, USERS, env_for, pd_incident, rules_dir
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.heartbeats import heartbeats_yaml, watchdog_body
from tests.support.server import BridgeProcess, wait_for

pytestmark = pytest.mark.integration

KEY = "incident-bridge:heartbeat:prometheus-watchdog"
EVERY = 10.0
CHECK = 0.5


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def test_a_silent_source_pages_once_survives_a_restart_and_resolves_when_it_speaks(tmp_path: Path,
                                                                                  pd: FakePagerDuty) -> None:
    rules = rules_dir(tmp_path)
    (rules / "heartbeats.yaml").write_text(heartbeats_yaml(every="10s"))
    env = env_for(tmp_path, pd, rules, BRIDGE_HEARTBEAT_CHECK_INTERVAL=str(CHECK))
    started = time.time()
    bridge = BridgeProcess(tmp_path, env).start()
    try:
        [status] = [h for h in bridge.get("/api/v1/heartbeats").json()["heartbeats"]
                    if h["name"] == "prometheus-watchdog"]
        assert status["state"] == "waiting" and status["incident_key"] == KEY

        [trigger] = wait_for(lambda: pd.triggers_for(KEY), timeout=40)
        assert trigger.received_at >= started + EVERY, "paged before the first interval was over"
        payload = trigger.body["payload"]
        assert payload["severity"] == "error"  # our P1
        assert payload["summary"].startswith("[P1] No alerts from alertmanager (alertname == 'Watchdog') since ")
        incident = wait_for(lambda: pd_incident(pd, KEY))
        assert incident.title.startswith("[P1] No alerts from alertmanager")
        wait_for(lambda: pd.incident(incident.id).priority_id is not None, timeout=20)
        assert pd.incident(incident.id).priority_id == "PPRI002"  # our P1 -> the account's "P2"
        assert pd.incident(incident.id).urgency == "high"

        local = bridge.get(f"/api/v1/incidents/{KEY}").json()
        assert (local["status"], local["severity"], local["service"]) == ("open", "P1", "monitoring")
        [status] = [h for h in bridge.get("/api/v1/heartbeats").json()["heartbeats"]
                    if h["name"] == "prometheus-watchdog"]
        assert (status["state"], status["incident_id"], status["last_seen"]) == ("missed", local["id"], None)

        # A restart while the source is still silent: the new worker sees the same silence and pages nobody.
        assert bridge.stop() == 0
        bridge = BridgeProcess(tmp_path, env).start()
        wait_for(lambda: "heartbeat watch started" in bridge.output(), timeout=20)
        time.sleep(6 * CHECK)  # several looks of the restarted worker
        assert len(pd.triggers_for(KEY)) == 1, bridge.output()

        # The Watchdog comes back: the incident resolves, here and in PagerDuty.
        answer = bridge.post("/webhooks/alertmanager", json.dumps(watchdog_body()))
        assert answer.status_code == 202, answer.text
        wait_for(lambda: pd.incident(incident.id).status == "resolved", timeout=20)
        assert bridge.get(f"/api/v1/incidents/{KEY}").json()["status"] == "resolved"
        [status] = [h for h in bridge.get("/api/v1/heartbeats").json()["heartbeats"]
                    if h["name"] == "prometheus-watchdog"]
        assert status["state"] == "ok" and status["incident_id"] is None and status["last_seen"]
        assert len(pd.triggers_for(KEY)) == 1
    finally:
        bridge.kill()
