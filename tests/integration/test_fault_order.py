"""Out of order and repeated (RELIABILITY.md, "Out of order and repeated"): a recovery before its trigger, a
Datadog retry of the same message (also 8 copies at once, racing), and senders whose clocks are minutes off.
SNS redelivery of one MessageId: tests/integration/test_cost_e2e.py,
test_sns_redelivery_of_the_same_message_id_is_a_duplicate (Pub/Sub: test_gcp_threshold_crossed_pages_and_repeats_are_
duplicates, same file)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.e2e import datadog_payload
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.faults import bridge_for
from tests.support.server import TOKEN, BridgeProcess, decided

pytestmark = pytest.mark.integration


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture
def bridge(tmp_path: Path, pd: FakePagerDuty) -> Iterator[BridgeProcess]:
    running = BridgeProcess(tmp_path, bridge_for(tmp_path, pd)).start()
    try:
        yield running
    finally:
        running.kill()


def post(bridge: BridgeProcess, payload: dict[str, object]) -> httpx2.Response:
    return bridge.post("/webhooks/datadog", json.dumps(payload))


def test_a_recovery_before_its_trigger_resolves_nothing_and_the_trigger_pages(bridge: BridgeProcess,
                                                                             pd: FakePagerDuty) -> None:
    recovered = decided(post(bridge, datadog_payload("ooo-2", monitor="9101", transition="Recovered", value=0)))
    [early] = recovered["alerts"]
    assert early["outcome"] == "nothing_to_resolve"
    triggered = decided(post(bridge, datadog_payload("ooo-1", monitor="9101")))
    [late] = triggered["alerts"]
    # The bridge decides in arrival order: the trigger that came last opens (and pages) an incident, which the
    # monitor's next recovery resolves. Documented in RELIABILITY.md: a page for a problem that may be over.
    assert late["outcome"] == "opened" and late["dedup_key"] == early["dedup_key"]
    pd.wait_for(lambda: pd.triggers_for(late["dedup_key"]), timeout=15)
    again = decided(post(bridge, datadog_payload("ooo-3", monitor="9101", transition="Recovered", value=0)))
    assert again["alerts"][0]["outcome"] == "resolved"


def test_a_datadog_retry_is_one_alert_and_its_answer_shows_the_outcome(bridge: BridgeProcess,
                                                                      pd: FakePagerDuty) -> None:
    payload = datadog_payload("retry-1", monitor="9201")
    first = decided(post(bridge, payload))["alerts"][0]
    assert first["outcome"] == "opened"
    retry = post(bridge, payload)
    assert retry.status_code == 200, retry.text  # nothing new was stored
    [repeat] = retry.json()["alerts"]
    assert repeat["duplicate"] is True and repeat["id"] == first["id"] and repeat["outcome"] == "opened"
    pd.wait_for(lambda: pd.triggers_for(first["dedup_key"]), timeout=15)
    assert len(pd.triggers_for(first["dedup_key"])) == 1


def test_eight_copies_at_once_are_one_alert(bridge: BridgeProcess, pd: FakePagerDuty) -> None:
    body = json.dumps(datadog_payload("race-1", monitor="9301")).encode()
    answers: list[httpx2.Response] = []
    gate = threading.Barrier(8)

    def send() -> None:
        gate.wait()
        answers.append(httpx2.post(f"{bridge.url}/webhooks/datadog", content=body, timeout=15,
                                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200] * 7 + [202], [r.text for r in answers]
    assert len({r.json()["alerts"][0]["id"] for r in answers}) == 1
    key = answers[0].json()["alerts"][0]["dedup_key"]
    pd.wait_for(lambda: pd.triggers_for(key), timeout=15)
    time.sleep(1.0)  # a second trigger, if any, would be queued by now
    assert len(pd.triggers_for(key)) == 1 and len(pd.incidents_for(key)) == 1


@pytest.mark.parametrize("skew_minutes", [-30, -5, 5, 30])
def test_a_sender_clock_minutes_off_is_decided_as_on_time(bridge: BridgeProcess, pd: FakePagerDuty,
                                                          skew_minutes: int) -> None:
    # Datadog's `date` (epoch ms) as a sender whose clock is off renders it.
    monitor = str(9400 + skew_minutes + 100)
    sender_now = (time.time() + skew_minutes * 60) * 1000
    trigger = datadog_payload(f"skew-{skew_minutes}-1", monitor=monitor) | {"date": str(int(sender_now))}
    opened = decided(post(bridge, trigger))["alerts"][0]
    assert opened["outcome"] == "opened"
    recovery = datadog_payload(f"skew-{skew_minutes}-2", monitor=monitor, transition="Recovered", value=0)
    recovery["date"] = str(int(sender_now - 120_000))  # the recovery's own date is *before* the trigger's
    assert decided(post(bridge, recovery))["alerts"][0]["outcome"] == "resolved"
    pd.wait_for(lambda: [e for e in pd.events if e.dedup_key == opened["dedup_key"]
                         and e.event_action == "resolve"], timeout=15)
