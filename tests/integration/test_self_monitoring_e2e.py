"""End to end: a real bridge whose deliveries stall (PagerDuty answers 500 to its routing key for a while) past a
short BRIDGE_STALL_THRESHOLD. /readyz fails with the reason, the metric shows the age, exactly one page about the
bridge goes to BRIDGE_FALLBACK_ROUTING_KEY (sent by a watchdog, not through the stalled outbox, although `serve`
runs two of them: the supervisor's and the worker's); when PagerDuty recovers, one resolve, and /readyz is 200."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import datadog_payload, post_alert
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import ROUTING_KEY, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

FALLBACK_KEY = "fa11bac0fa11bac0fa11bac0fa11bac0"
SELF_KEY = "incident-bridge:self:delivery"


@pytest.fixture
def bridge(tmp_path: Path, pagerduty: FakePagerDuty) -> Iterator[BridgeProcess]:
    secret_file = tmp_path / "fallback-key"
    secret_file.write_text(FALLBACK_KEY + "\n")
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url, BRIDGE_STALL_THRESHOLD="2s",
                                              BRIDGE_FALLBACK_ROUTING_KEY_FILE=str(secret_file))).start()
    yield proc
    proc.kill()


def self_events(pd: FakePagerDuty, action: str) -> list[object]:
    return [e for e in pd.events if e.routing_key == FALLBACK_KEY and e.event_action == action]


def metric(bridge: BridgeProcess, name: str) -> float:
    text = bridge.get("/metrics").text
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert found, f"{name} missing from /metrics"
    return float(found.group(1))


def test_stalled_delivery_fails_readiness_and_pages_the_fallback_key_once(bridge: BridgeProcess,
                                                                         pagerduty: FakePagerDuty) -> None:
    pagerduty.fail(500, times=1_000_000, api="events", routing_key=ROUTING_KEY)  # the primary service's API is down
    key = post_alert(bridge, datadog_payload("5001"))["alerts"][0]["dedup_key"]

    def not_ready() -> dict[str, object] | None:
        r = bridge.get("/readyz")
        return r.json() if r.status_code == 503 else None

    answer = wait_for(not_ready, timeout=30)
    [stall] = answer["stalled"]
    assert stall["what"] == "delivery" and stall["age_seconds"] > 2 and stall["threshold_seconds"] == 2
    assert any(p.startswith("delivery: the oldest pending outbox job has waited") for p in answer["problems"])
    assert metric(bridge, "bridge_oldest_pending_job_age_seconds") > 2
    assert metric(bridge, "bridge_journal_oldest_undecided_age_seconds") == 0
    # A load balancer's probe asks only whether this replica can take alerts: it can (the manifests use this).
    receive = bridge.get("/readyz?scope=receive")
    assert receive.status_code == 200 and receive.json()["status"] == "ready"
    bad = bridge.get("/readyz?scope=everything")
    assert bad.status_code == 400 and bad.json()["error"] == "bad_parameter"

    [trigger] = wait_for(lambda: self_events(pagerduty, "trigger"), timeout=30)
    assert trigger.dedup_key == SELF_KEY  # type: ignore[attr-defined]
    assert "incident-bridge is stalled: delivery" in (trigger.summary or "")  # type: ignore[attr-defined]
    # Both watchdogs keep looking (every 0.5 s at this threshold) while the stall lasts: still one trigger.
    time.sleep(2.0)
    assert len(self_events(pagerduty, "trigger")) == 1
    assert pagerduty.triggers_for(key) == []  # the page itself is still stuck

    pagerduty.clear_faults()  # PagerDuty recovers: the page goes out, the bridge is healthy again
    wait_for(lambda: pagerduty.triggers_for(key, routing_key=ROUTING_KEY), timeout=30)
    [resolve] = wait_for(lambda: self_events(pagerduty, "resolve"), timeout=30)
    assert resolve.dedup_key == SELF_KEY  # type: ignore[attr-defined]
    assert wait_for(lambda: bridge.get("/readyz").status_code == 200, timeout=30)
    assert metric(bridge, "bridge_oldest_pending_job_age_seconds") == 0
    time.sleep(1.0)
    assert len(self_events(pagerduty, "trigger")) == 1 and len(self_events(pagerduty, "resolve")) == 1
    assert FALLBACK_KEY not in bridge.output()
