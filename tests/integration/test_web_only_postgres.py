"""The HA shape's processes (deploy/kubernetes/ha), for real on PostgreSQL: two `serve --no-worker` (web only) and
one `incident-bridge worker`, as separate processes on one database.

The web replicas journal and answer but decide and send nothing; the worker, started after, decides every alert
either replica took and pages PagerDuty once per incident. With JSON logs, the request id given to a web replica is
on the worker's lines of the same alert: the request id travels through the database, not through a process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.e2e import datadog_payload
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.postgres import fresh_database
from tests.support.server import ROUTING_KEY, BridgeProcess, WorkerProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration


def test_two_web_only_replicas_and_a_worker_page_once(tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    with fresh_database() as url:
        env = bridge_env(tmp_path, BRIDGE_DATABASE_URL=url, BRIDGE_LOG_FORMAT="json",
                         PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pagerduty.url)
        webs = [BridgeProcess(tmp_path, env, args=("--no-worker",)) for _ in range(2)]
        worker = WorkerProcess(tmp_path, env)
        try:
            for web in webs:
                web.start()
            # The same event through both replicas (a sender's retry that the load balancer sent elsewhere).
            first = webs[0].post("/webhooks/datadog", json.dumps(datadog_payload("9001")),
                                 headers={"X-Request-Id": "web-0-request"})
            second = webs[1].post("/webhooks/datadog", json.dumps(datadog_payload("9001")),
                                  headers={"X-Request-Id": "web-1-request"})
            assert (first.status_code, second.status_code) == (202, 200), (first.text, second.text)
            key = first.json()["alerts"][0]["dedup_key"]
            alert_id = first.json()["alerts"][0]["id"]
            # No worker yet: nothing is decided, nothing is sent.
            assert webs[1].get(f"/api/v1/alerts/{alert_id}").json()["outcome"] == "pending"
            assert pagerduty.triggers_for(key) == []
            for web in webs:
                assert "pipeline stage started" not in web.output()
                assert "delivery worker started" not in web.output()

            worker.start()
            wait_for(lambda: pagerduty.triggers_for(key), timeout=30)
            webs[0].wait_decided()
            wait_for(lambda: "delivered job" in worker.output(), timeout=30)
            assert len(pagerduty.triggers_for(key)) == 1
        finally:
            for web in webs:
                web.kill()
            worker.kill()
        records = [json.loads(line) for line in worker.output().splitlines()]
        mine = [r for r in records if r.get("alert_id") == alert_id]
        assert {r["logger"] for r in mine} >= {"bridge.pipeline.stage", "bridge.delivery.worker"}
        assert {r["request_id"] for r in mine} == {"web-0-request"}
