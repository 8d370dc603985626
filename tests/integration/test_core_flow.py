"""End to end: a real bridge process, alerts over HTTP, events checked at a loopback PagerDuty fake.

These tests exercise guarantees, not code paths: a Recovered resolves the same dedup key; PagerDuty failing
three times still yields exactly one accepted trigger; a bridge killed between its 202 and the delivery
delivers after a restart, once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import datadog_payload, post_alert
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import REPO, ROUTING_KEY, TOKEN, BridgeProcess, bridge_env, decided, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge(tmp_path: Path, pagerduty: FakePagerDuty) -> Iterator[BridgeProcess]:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url)).start()
    yield proc
    proc.kill()


def test_alert_pages_and_recovery_resolves_the_same_dedup_key(bridge: BridgeProcess,
                                                              pagerduty: FakePagerDuty) -> None:
    answer = post_alert(bridge, datadog_payload("1001"))
    [item] = answer["alerts"]
    assert item["severity"] == "P0" and item["action"] == "page" and item["rule"] == "datadog-monitor"
    key = item["dedup_key"]
    assert key == "datadog:183664512:env:prod,service:checkout"

    [trigger] = wait_for(lambda: pagerduty.triggers_for(key))
    payload = trigger.body["payload"]
    assert payload["severity"] == "critical"
    assert len(payload["summary"]) <= 1024 and payload["summary"].startswith("[P0] ")
    assert payload["custom_details"]["rule"] == "datadog-monitor"
    assert any("users_affected_pct = 27.4 is P0" in r for r in payload["custom_details"]["reasons"])
    assert trigger.body["links"][0]["href"].startswith("https://app.datadoghq.com/")

    recovered = post_alert(bridge, datadog_payload("1002", transition="Recovered", value=0.0))
    assert recovered["alerts"][0]["action"] == "resolve"
    assert recovered["alerts"][0]["dedup_key"] == key
    wait_for(lambda: [e for e in pagerduty.events if e.event_action == "resolve" and e.dedup_key == key])
    alert = pagerduty.alert(key, ROUTING_KEY)
    assert alert is not None and alert.status == "resolved"
    assert len(pagerduty.triggers_for(key)) == 1


def test_repeat_of_an_accepted_event_answers_200_with_the_original_result(bridge: BridgeProcess,
                                                                          pagerduty: FakePagerDuty) -> None:
    first = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("2001")))
    assert first.status_code == 202
    # The first answer comes as soon as the alert is journaled; the pipeline decides it after.
    assert first.json()["alerts"][0]["outcome"] == "pending"
    original = decided(first)["alerts"][0]
    second = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("2001")))
    assert second.status_code == 200
    repeat = second.json()["alerts"][0]
    assert repeat.pop("duplicate") is True
    assert repeat == original
    key = original["dedup_key"]
    wait_for(lambda: pagerduty.triggers_for(key))
    assert len(pagerduty.triggers_for(key)) == 1


def test_pagerduty_failing_three_times_then_accepting_yields_one_trigger(bridge: BridgeProcess,
                                                                         pagerduty: FakePagerDuty) -> None:
    pagerduty.fail(503, times=1, api="events")
    pagerduty.fail(429, times=1, api="events")
    pagerduty.drop(times=1, api="events")
    answer = post_alert(bridge, datadog_payload("3001", monitor="9001"))
    key = answer["alerts"][0]["dedup_key"]
    wait_for(lambda: pagerduty.triggers_for(key))
    assert pagerduty.pending_faults == 0
    attempts = [r for r in pagerduty.requests_to("/v2/enqueue") if (r.json() or {}).get("dedup_key") == key]
    assert len(attempts) == 4
    assert len(pagerduty.triggers_for(key)) == 1
    jobs = bridge.get("/api/v1/jobs").json()["jobs"]
    [job] = [j for j in jobs if j["dedup_key"] == key and j["kind"] == "event"]
    assert job["state"] == "delivered" and job["attempts"] == 4


def test_a_400_from_pagerduty_is_dead_lettered_with_its_reason(bridge: BridgeProcess,
                                                               pagerduty: FakePagerDuty) -> None:
    pagerduty.fail(400, api="events", body={"status": "invalid event", "message": "Event object is invalid",
                                            "errors": ["'payload.source' is missing or blank"]})
    answer = post_alert(bridge, datadog_payload("4001", monitor="9002"))
    key = answer["alerts"][0]["dedup_key"]

    def dead() -> list[dict[str, Any]]:
        return [j for j in bridge.get("/api/v1/jobs?state=dead").json()["jobs"]
                if j["dedup_key"] == key and j["kind"] == "event"]

    [job] = wait_for(dead)
    assert job["attempts"] == 1 and job["reason"] == "rejected"
    assert "payload.source" in job["last_error"]
    assert pagerduty.triggers_for(key) == []
    assert "dead-lettered" in bridge.output()


def test_killed_between_the_202_and_the_delivery_delivers_after_restart_once(tmp_path: Path,
                                                                             pagerduty: FakePagerDuty) -> None:
    env = bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url)
    # PagerDuty holds the first send open (and never ingests it): the worker is mid-send when it is killed.
    pagerduty.delay(30.0, api="events")
    first = BridgeProcess(tmp_path, env).start()
    answer = post_alert(first, datadog_payload("5001", monitor="9003"))
    key = answer["alerts"][0]["dedup_key"]
    wait_for(lambda: pagerduty.requests_to("/v2/enqueue"))
    first.kill()
    assert pagerduty.triggers_for(key) == []

    pagerduty.clear_faults()
    second = BridgeProcess(tmp_path, env).start()
    try:
        wait_for(lambda: pagerduty.triggers_for(key))
        # Give a duplicate every chance to show up before asserting there is none.
        second.get("/healthz")
        import time

        time.sleep(1.0)
        assert len(pagerduty.triggers_for(key)) == 1
        answer_again = post_alert(second, datadog_payload("5001", monitor="9003"))
        assert answer_again["alerts"][0]["duplicate"] is True
    finally:
        second.kill()


def test_killed_before_the_worker_ran_delivers_after_restart_once(tmp_path: Path,
                                                                  pagerduty: FakePagerDuty) -> None:
    env = bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url)
    pagerduty.fail(503, times=1000, api="events")  # nothing gets through while the first bridge lives
    first = BridgeProcess(tmp_path, env).start()
    answer = post_alert(first, datadog_payload("6001", monitor="9004"))
    key = answer["alerts"][0]["dedup_key"]
    first.kill()
    pagerduty.clear_faults()
    second = BridgeProcess(tmp_path, env).start()
    try:
        wait_for(lambda: pagerduty.triggers_for(key))
        assert len(pagerduty.triggers_for(key)) == 1
    finally:
        second.kill()


def test_sigterm_drains_and_stops_both_processes(tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url)).start()
    post_alert(proc, datadog_payload("7001", monitor="9005"))
    assert proc.stop() == 0
    out = proc.output()
    assert "draining and stopping" in out
    assert "delivery worker stopped" in out


def test_dry_run_without_routing_key_prints_and_never_sends(tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_EVENTS_URL=pagerduty.url)).start()
    try:
        answer = post_alert(proc, datadog_payload("8001", monitor="9006"))
        key = answer["alerts"][0]["dedup_key"]
        wait_for(lambda: "DRY-RUN" in proc.output() and key in proc.output())

        def event_states() -> list[str]:
            jobs = proc.get("/api/v1/jobs").json()["jobs"]
            return [j["state"] for j in jobs if j["dedup_key"] == key and j["kind"] == "event"]

        # The line is printed before the job's state is committed: wait for the commit, not for the line.
        wait_for(lambda: event_states() == ["dry_run"])
        assert event_states() == ["dry_run"]
        assert pagerduty.requests_to("/v2/enqueue") == []
    finally:
        proc.kill()


def test_bad_input_gets_clear_json_errors(bridge: BridgeProcess) -> None:
    r = bridge.post("/webhooks/datadog", "{not json")
    assert r.status_code == 400 and r.json()["error"] == "bad_payload" and r.json()["message"]
    r = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("9001")), token="zz-not-the-token-42")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert "zz-not-the-token-42" not in r.text and TOKEN not in r.text
    big = b'{"id": "x", "text": "' + b"a" * (1024 * 1024 + 10) + b'"}'
    r = bridge.post("/webhooks/datadog", big)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def test_chunked_body_over_the_limit_is_413_not_truncated(bridge: BridgeProcess) -> None:
    import httpx2

    def chunks() -> Iterator[bytes]:
        yield b'{"id": "chunked", "text": "'
        for _ in range(20):
            yield b"a" * 65536
        yield b'"}'

    r = httpx2.post(f"{bridge.url}/webhooks/datadog", content=chunks(),
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 413, r.text

    def small() -> Iterator[bytes]:
        body = json.dumps(datadog_payload("chunked-ok", monitor="9007")).encode()
        yield body[:40]
        yield body[40:]

    r = httpx2.post(f"{bridge.url}/webhooks/datadog", content=small(),
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 202, r.text


def test_every_captured_datadog_payload_is_accepted_without_5xx(bridge: BridgeProcess) -> None:
    from tests.support.shared import shared_text

    lines = [ln for ln in shared_text("fixtures/datadog/keep-raw-alerts.jsonl").splitlines() if ln.startswith("{")]
    assert len(lines) == 43
    for line in lines:
        r = bridge.post("/webhooks/datadog", line)
        assert r.status_code in (200, 202), (r.status_code, r.text)


def test_refuses_to_listen_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = bridge_env(tmp_path)
    env.pop("BRIDGE_WEBHOOK_TOKEN")
    done = subprocess.run([sys.executable, "-m", "bridge", "serve", "--host", "0.0.0.0", "--port", "0"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_replay_prints_the_outcome_the_pipeline_decided(bridge: BridgeProcess, tmp_path: Path) -> None:
    # The 202 says "pending"; replay (and serve --demo) reads the decided outcome back with the admin token.
    examples = REPO / "webhooks" / "datadog" / "examples"
    files = [examples / "01-checkout-users-triggered.json", examples / "04-payments-api-no-data.json"]
    result = subprocess.run([sys.executable, "-m", "bridge", "replay", *map(str, files), "--url", bridge.url],
                            env=bridge.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert '"outcome": "opened"' in lines[0] and '"outcome": "recorded"' in lines[1], result.stdout
    assert "pending" not in result.stdout


@pytest.mark.parametrize(("level", "logged"), [("INFO", False), ("DEBUG", True)])
def test_http_client_request_lines_are_debug_detail(tmp_path: Path, pagerduty: FakePagerDuty, level: str,
                                                    logged: bool) -> None:
    """httpx2 logs each request it makes ("HTTP Request: POST ...") at INFO: a line per page, note and lookup. The
    bridge shows them with BRIDGE_LOG_LEVEL=DEBUG only."""
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, BRIDGE_LOG_LEVEL=level,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url)).start()
    try:
        key = post_alert(proc, datadog_payload("9001"))["alerts"][0]["dedup_key"]
        wait_for(lambda: pagerduty.triggers_for(key))
        wait_for(lambda: "delivered job" in proc.output())  # logged after the request's own line
    finally:
        proc.kill()
    lines = [line for line in proc.output().splitlines() if "HTTP Request: POST" in line]
    assert bool([line for line in lines if f"{pagerduty.url}/v2/enqueue" in line]) == logged, proc.output()
    if not logged:
        assert lines == []
