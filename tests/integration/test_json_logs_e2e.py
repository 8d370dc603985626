"""End to end: `serve` with BRIDGE_LOG_FORMAT=json writes nothing but JSON objects, one a line, and an alert's
request id is on its receipt, pipeline and delivery lines (issue 14, "Structured logs").

A real bridge (supervisor, gunicorn master and workers, the `python -m bridge worker` child) pages the loopback
PagerDuty fake; a malformed request makes gunicorn log an
error line of its own. Every line of its stdout and stderr is parsed as JSON: one line that is not fails the test.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import datadog_payload
from tests.support.fakes.pagerduty import API_KEY, FakePagerDuty
from tests.support.server import ADMIN_TOKEN, ROUTING_KEY, TOKEN, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

REQUEST_ID = "trace-4bf92f3577b34da6"
SECRETS = (TOKEN, ADMIN_TOKEN, ROUTING_KEY, API_KEY)


@pytest.fixture
def bridge(tmp_path: Path, pagerduty: FakePagerDuty) -> Iterator[BridgeProcess]:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, BRIDGE_LOG_FORMAT="json",
                                              PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url)).start()
    yield proc
    proc.kill()


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of `output` as a JSON object; fails naming the first line that is not one."""
    records = []
    for number, line in enumerate(output.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line!r}"
        records.append(record)
    return records


def test_every_line_is_json_and_the_request_id_follows_the_alert_to_pagerduty(
        bridge: BridgeProcess, pagerduty: FakePagerDuty) -> None:
    answer = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("7001")),
                         headers={"X-Request-Id": REQUEST_ID})
    assert answer.status_code == 202, answer.text
    assert answer.headers["X-Request-Id"] == REQUEST_ID
    [item] = answer.json()["alerts"]
    alert_id, key = item["id"], item["dedup_key"]
    wait_for(lambda: pagerduty.triggers_for(key), timeout=30)

    # A request without an id gets a new one; one with an insane id gets a new one, never its own echoed back.
    fresh = bridge.get(f"/api/v1/alerts/{alert_id}")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-Id"])
    hostile = bridge.post("/webhooks/datadog", json.dumps(datadog_payload("7002")),
                          headers={"X-Request-Id": "x" * 200})
    assert hostile.status_code == 202 and re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-Id"])
    # gunicorn refuses a malformed request line itself: its error line must be JSON too.
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as raw:
        raw.sendall(b"GARBAGE\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    bridge.wait_decided()
    wait_for(lambda: "delivered job" in bridge.output(), timeout=30)  # written after PagerDuty's answer
    assert bridge.stop() == 0

    output = bridge.output()
    records = json_lines(output)
    for secret in SECRETS:
        assert secret not in output
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
    loggers = {r["logger"] for r in records}
    assert {"bridge.server", "gunicorn.error", "gunicorn.access", "bridge.web", "bridge.pipeline.stage",
            "bridge.delivery.worker"} <= loggers, loggers
    # Three processes at least wrote them: the supervisor, gunicorn and the worker child.
    assert len({r["pid"] for r in records}) >= 3

    def of_alert(logger: str) -> list[dict[str, Any]]:
        return [r for r in records if r["logger"] == logger and r.get("alert_id") == alert_id]

    [receipt] = of_alert("bridge.web")
    [pipeline] = of_alert("bridge.pipeline.stage")
    delivered = [r for r in of_alert("bridge.delivery.worker") if r["message"].startswith("delivered job")]
    assert delivered, [r for r in records if r["logger"] == "bridge.delivery.worker"]
    for record in (receipt, pipeline, *delivered):
        assert record["request_id"] == REQUEST_ID and record["dedup_key"] == key, record
    assert pipeline["action"] == "page" and "event trigger" in pipeline["message"]
    [access] = [r for r in records if r["logger"] == "gunicorn.access" and r.get("request_id") == REQUEST_ID]
    assert access["method"] == "POST" and access["path"] == "/webhooks/datadog" and access["status"] == 202
    assert isinstance(access["duration_ms"], float) and access["remote_addr"] == "127.0.0.1"
    assert not [r for r in records if r.get("request_id") == "x" * 200]
    assert any(r["logger"] == "gunicorn.error" and r["level"] == "WARNING" and "Invalid request" in r["message"]
               for r in records)


def test_a_start_up_error_is_one_json_line(tmp_path: Path) -> None:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, BRIDGE_LOG_FORMAT="json",
                                              BRIDGE_RULES=str(tmp_path / "missing"))).start(wait=False)
    assert proc.proc is not None
    assert proc.proc.wait(timeout=60) == 2
    [record] = json_lines(proc.output())
    assert record["level"] == "ERROR" and "BRIDGE_RULES" in record["message"] and "does not exist" in record["message"]
