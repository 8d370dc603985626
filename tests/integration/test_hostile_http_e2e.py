"""One pass of the hostile bodies over real HTTP: `python -m bridge serve` (gunicorn, the worker) on loopback, every
receiver configured with its real authentication, and generated and mutated bodies for each (the strategies of
tests/support/hostile.py, as tests/unit/web/test_hostile_bodies.py sends them through the test client). What the
test client cannot show: gunicorn's parsing, the worker class's own error answers, and the pipeline stage deciding
what was accepted. Never a 5xx; a refusal stores nothing; in the end every accepted alert is decided.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cost_signing import GoogleSigner, SnsSigner, pubsub_push
from tests.support.hostile import body_bytes, examples
from tests.support.server import ADMIN_TOKEN, TOKEN, BridgeProcess, bridge_env, wait_for
from tests.support.shared import REPO, shared_json, shared_path

TOPIC = "arn:aws:sns:us-east-1:123456789012:cost-alerts"
AUDIENCE = "https://bridge.example.com/webhooks/gcp-pubsub"
SERVICE_ACCOUNT = "budget-push@example-project.iam.gserviceaccount.com"
AZURE = "azure-token-for-hostile-http"
GRAFANA = "grafana-token-for-hostile-http"


class Served:
    def __init__(self, tmp: Path) -> None:
        self.sns = SnsSigner(tmp / "sns-certs")
        self.google = GoogleSigner()
        certs = self.google.write_certs(tmp / "google-certs.json")
        env = bridge_env(tmp, BRIDGE_SNS_TOPICS=TOPIC, BRIDGE_SNS_CERT_DIR=str(tmp / "sns-certs"),
                         BRIDGE_GCP_AUDIENCE=AUDIENCE, BRIDGE_GCP_SERVICE_ACCOUNTS=SERVICE_ACCOUNT,
                         BRIDGE_GCP_CERTS=str(certs), BRIDGE_AZURE_TOKEN=AZURE, BRIDGE_GRAFANA_TOKEN=GRAFANA,
                         BRIDGE_LOG_LEVEL="WARNING")
        self.bridge = BridgeProcess(tmp, env).start()
        self.client = httpx2.Client(base_url=self.bridge.url, timeout=30.0)
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.counts: dict[str, dict[str, int]] = {}

    def last_id(self) -> int:
        return int(self.client.get("/api/v1/pipeline", headers=self.admin).json()["journal"]["last_id"])

    def post(self, receiver: str, body: bytes, headers: dict[str, str], query: str = "") -> None:
        before = self.last_id()
        r = self.client.post(f"/webhooks/{receiver}{query}", content=body, headers=headers)
        tally = self.counts.setdefault(receiver, {"inputs": 0})
        tally["inputs"] += 1
        tally[str(r.status_code)] = tally.get(str(r.status_code), 0) + 1
        assert r.status_code < 500, (r.status_code, r.text[:500])
        answer: Any = r.json()
        if r.status_code >= 400:
            assert set(answer) == {"error", "message"}, answer
            assert self.last_id() == before, "a refused body left an alert behind"
            return
        for item in answer.get("alerts", []):
            got = self.client.get(f"/api/v1/alerts/{item['id']}", headers=self.admin)
            assert got.status_code == 200 and got.json()["dedup_key"] == item["dedup_key"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    shared_path("fixtures")
    s = Served(tmp_path_factory.mktemp("hostile-http"))
    try:
        yield s
        # Everything accepted is decided by the real pipeline stage (no half-stored entry blocks the journal).
        wait_for(lambda: s.client.get("/api/v1/pipeline", headers=s.admin).json()["journal"]["undecided"] == 0,
                 timeout=60)
        report = os.environ.get("BRIDGE_FUZZ_REPORT_HTTP")
        if report:  # inputs and answers per receiver, for RELIABILITY.md
            Path(report).write_text(json.dumps(s.counts, indent=1, sort_keys=True), encoding="utf-8")
    finally:
        s.client.close()
        s.bridge.stop()


HTTP = settings(max_examples=examples(15), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
JSON = {"Content-Type": "application/json"}


def _datadog() -> Any:
    line = shared_path("fixtures/datadog/keep-raw-alerts.jsonl").read_text(encoding="utf-8").splitlines()[0]
    return json.loads(line)


@given(data=st.data())
@HTTP
def test_datadog_over_http(served: Served, data: st.DataObject) -> None:
    served.post("datadog", data.draw(body_bytes(_datadog())), {**JSON, "Authorization": f"Bearer {TOKEN}"})


@given(data=st.data())
@HTTP
def test_alertmanager_over_http(served: Served, data: st.DataObject) -> None:
    body = shared_json("fixtures/alertmanager/webhook-v4-example.assembled.json")
    served.post("alertmanager", data.draw(body_bytes(body)), {**JSON, "Authorization": f"Bearer {TOKEN}"})


@given(data=st.data())
@HTTP
def test_azure_over_http(served: Served, data: st.DataObject) -> None:
    body = shared_json("fixtures/azure-budget/common-schema-costalerts-actual.json")
    served.post("azure", data.draw(body_bytes(body)), JSON, query=f"?token={AZURE}")


@given(data=st.data())
@HTTP
def test_generic_over_http(served: Served, data: st.DataObject) -> None:
    example = json.loads((REPO / "webhooks/generic/examples/grafana-firing.json").read_text(encoding="utf-8"))
    served.post("generic/grafana", data.draw(body_bytes(example)), {**JSON, "Authorization": f"Bearer {GRAFANA}"})


@given(data=st.data())
@HTTP
def test_gcp_pubsub_over_http(served: Served, data: st.DataObject) -> None:
    budget = shared_json("fixtures/gcp-budget/budget-data-notification-format-sample.json")
    envelope = pubsub_push({}, message_id=str(data.draw(st.integers(0, 10**9))), budget_id="b-http")
    envelope["message"]["data"] = base64.b64encode(data.draw(body_bytes(budget))).decode("ascii")
    token = served.google.token(audience=AUDIENCE, email=SERVICE_ACCOUNT)
    served.post("gcp-pubsub", json.dumps(envelope).encode(), {**JSON, "Authorization": f"Bearer {token}"})


@given(data=st.data())
@HTTP
def test_aws_sns_over_http(served: Served, data: st.DataObject) -> None:
    cad = shared_json("fixtures/aws-cost-anomaly/cad-sns-message-documented-current.json")
    # Signed, so the hostile Message reaches the parser (bytes that are not UTF-8 cannot be signed: replaced).
    envelope = served.sns.notification(data.draw(body_bytes(cad)).decode("utf-8", "replace"), topic=TOPIC)
    served.post("aws-sns", json.dumps(envelope).encode(),
                {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"})
