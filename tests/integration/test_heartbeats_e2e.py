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
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bridge.pipeline.heartbeats import HeartbeatWatch
from bridge.pipeline.stage import PipelineStage
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.e2e import POLICIES, SERVICES, USERS, env_for, pd_incident, rules_dir
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.heartbeats import heartbeats_yaml, watchdog_body
from tests.support.server import BridgeProcess, bridge_env, wait_for

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


def test_the_heartbeats_command_shows_each_state(tmp_path: Path) -> None:
    rules = rules_dir(tmp_path)
    (rules / "heartbeats.yaml").write_text(heartbeats_yaml(every="5m"))
    env = bridge_env(tmp_path, BRIDGE_RULES=str(rules))
    cmd = [sys.executable, "-m", "bridge", "heartbeats"]

    missing = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("incident-bridge: no database at "), missing.stderr

    # A bridge that began watching ten minutes ago and never heard from either source; the watchdog's page decided.
    store = Store.open(env["BRIDGE_DATABASE_URL"])
    holder = RulesetHolder(rules, store)
    holder.load()
    started = time.time() - 600
    store.watch_heartbeats([h.name for h in holder.current.heartbeats], started)
    HeartbeatWatch(store, lambda: holder.current, clock=time.time).check()
    PipelineStage(store, lambda: holder.current).drain()
    store.engine.dispose()

    text = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    watchdog, canary = text.stdout.splitlines()
    assert watchdog.split()[:6] == ["prometheus-watchdog", "missed", "every", "5m", "last", "never"]
    assert watchdog.endswith("incident 1")
    assert canary.split()[:6] == ["datadog-canary", "waiting", "every", "30m", "last", "never"]
    assert canary.endswith("  -")

    as_json = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=120)
    found = {h["name"]: h for h in json.loads(as_json.stdout)["heartbeats"]}
    assert found["prometheus-watchdog"]["incident_key"] == KEY and found["prometheus-watchdog"]["incident_id"] == 1
    assert abs(datetime.fromisoformat(found["datadog-canary"]["due_at"]).timestamp() - (started + 1800)) < 1
