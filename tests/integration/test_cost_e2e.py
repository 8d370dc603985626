"""End to end: cloud-cost alerts from AWS (SNS), Google Cloud (Pub/Sub push) and Azure (action groups) through
the real `python -m bridge serve`, signed the way each provider signs them, with self-made keys.

Guarantees checked, per source:
- authentic requests page with the cost figures a responder needs (dollars and percent), at the severity of the
  shipped matrix (rules/severity.yaml), with the Infrastructure Lead among the roles;
- forged, misaddressed, replayed and unauthenticated requests are refused with a JSON error and page nobody;
- repeats (SNS/Pub/Sub at-least-once delivery, CAD re-sending an anomaly with a growing impact) never open a
  second incident, and a repeat that crosses a higher severity raises the incident and pages again;
- nothing leaves the machine (every bridge runs behind a proxy trap that records any outbound fetch; signing
  certificates come from BRIDGE_SNS_CERT_DIR and BRIDGE_GCP_CERTS), and no secret reaches the bridge's log.

`rules explain --json` is run as a subprocess on the same raw bodies, for every cost source and Datadog.
Fixtures: ../shared/fixtures/aws-cost-anomaly, aws-budgets, azure-budget (through tests/support/shared.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.cost_signing import GoogleSigner, SnsSigner, pubsub_push, sns_headers, sns_timestamp
from tests.support.egress import EgressTrap
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import REPO, ROUTING_KEY, TOKEN, BridgeProcess, bridge_env, decided, wait_for
from tests.support.shared import shared_json, shared_text

pytestmark = pytest.mark.integration

TOPIC = "arn:aws:sns:us-east-1:123456789012:cost-alerts"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"
CAD_CURRENT = "fixtures/aws-cost-anomaly/cad-sns-message-documented-current.json"
BUDGETS_2019 = "fixtures/aws-budgets/budgets-actual-monthly-2019-10-28.txt"
AZURE_ACTUAL = "fixtures/azure-budget/common-schema-costalerts-actual.json"
AZURE_FORECAST = "fixtures/azure-budget/common-schema-costalerts-forecasted.json"

GCP_AUDIENCE = "https://bridge.example.com/webhooks/gcp-pubsub"
GCP_SA = "budget-push@e2e-project.iam.gserviceaccount.com"
AZURE_TOKEN = "azure-action-group-secret-7f3c9a1e5b"
WRONG_AZURE_TOKEN = "zz-wrong-azure-token-0c4d2e"

# How long to keep watching for a second page that must not come (the worker polls well inside this).
QUIET_PERIOD = 1.0


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@dataclass
class Harness:
    """One test's world: the PagerDuty fake, the egress trap, the bridges started, and every secret used."""

    tmp: Path
    pd: FakePagerDuty
    trap: EgressTrap
    bridges: list[BridgeProcess] = field(default_factory=list)
    secrets: set[str] = field(default_factory=lambda: {TOKEN, ROUTING_KEY})

    def start(self, *, host: str = "127.0.0.1", **env: Any) -> BridgeProcess:
        """A bridge sending to the fake, with `env` on top (values of None leave a variable unset)."""
        run_dir = self.tmp / f"bridge{len(self.bridges)}"
        run_dir.mkdir()
        base = bridge_env(run_dir, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=self.pd.url,
                          **self.trap.env())
        for key, value in env.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = str(value)
        bridge = BridgeProcess(run_dir, base, args=("--host", host))  # the last --host wins
        bridge.url = f"http://{host}:{bridge.port}"
        self.bridges.append(bridge)
        return bridge.start()

    def secret(self, value: str) -> str:
        self.secrets.add(value)
        return value


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    trap = EgressTrap()
    with FakePagerDuty(tls=False) as pd:
        h = Harness(tmp_path, pd, trap)
        try:
            yield h
            # The guarantees every test ends with.
            pd.assert_no_invalid_requests()
            for bridge in h.bridges:
                out = bridge.output()
                leaked = sorted(s for s in h.secrets if s and s in out)
                assert not leaked, f"secrets in the bridge log: {[s[:12] + '...' for s in leaked]}"
                assert "Traceback" not in out, out
            if not trap.expected:
                assert trap.requests == [], f"the bridge tried to reach the network: {trap.requests}"
        finally:
            for bridge in h.bridges:
                bridge.kill()
            trap.close()


def answer(response: httpx2.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return decided(response) if 200 <= status < 300 else dict(response.json())


def one_alert(body: dict[str, Any]) -> dict[str, Any]:
    [item] = body["alerts"]
    return dict(item)


def assert_no_page_for(pd: FakePagerDuty, key: str) -> None:
    time.sleep(QUIET_PERIOD)
    assert pd.triggers_for(key) == []


def amounts(cost: dict[str, Any]) -> dict[str, Decimal | None]:
    return {k: (Decimal(cost[k]) if cost.get(k) is not None else None)
            for k in ("actual", "expected", "impact", "increase_pct")}


# ---------------------------------------------------------------------------------------------------------------
# AWS SNS (Cost Anomaly Detection, Budgets)


@dataclass
class Sns:
    bridge: BridgeProcess
    signer: SnsSigner

    def post(self, envelope: dict[str, Any] | str, *, raw: bool = False,
             headers: dict[str, str] | None = None) -> httpx2.Response:
        body = envelope if isinstance(envelope, str) else json.dumps(envelope)
        h = sns_headers(envelope if isinstance(envelope, dict) else {}, raw=raw)
        h.update(headers or {})
        # No Authorization header: SNS sends none; the signature is the authentication.
        return self.bridge.post("/webhooks/aws-sns", body, token=None, headers=h)

    def notify(self, message: str, **kw: Any) -> httpx2.Response:
        return self.post(self.signer.notification(message, topic=kw.pop("topic", TOPIC), **kw))


@pytest.fixture
def sns(harness: Harness) -> Sns:
    signer = SnsSigner(harness.tmp / "sns-certs")
    bridge = harness.start(BRIDGE_SNS_TOPICS=TOPIC, BRIDGE_SNS_CERT_DIR=signer.cert_dir, BRIDGE_SNS_MAX_AGE=900)
    return Sns(bridge, signer)


def cad_message(anomaly_id: str | None = None, *, actual: float | None = None, expected: float | None = None) -> str:
    """The current documented CAD message as SNS carries it (a JSON string), optionally with other figures."""
    message = shared_json(CAD_CURRENT)
    if anomaly_id:
        message["anomalyId"] = anomaly_id
    if actual is not None and expected is not None:
        impact = message["impact"]
        impact["totalActualSpend"], impact["totalExpectedSpend"] = actual, expected
        impact["totalImpact"] = round(actual - expected, 2)
        impact["totalImpactPercentage"] = round((actual - expected) / expected * 100, 2)
        impact["maxImpact"] = round((actual - expected) / 2, 2)
    return json.dumps(message, indent=4)


def test_sns_cost_anomaly_pages_p0_with_dollars_and_percent(harness: Harness, sns: Sns) -> None:
    item = one_alert(answer(sns.notify(cad_message(), subject="AWS Cost Anomaly Detection alert"), 202))
    assert (item["severity"], item["action"], item["rule"], item["outcome"]) == ("P0", "page", "cloud-cost",
                                                                               "opened")
    key = item["dedup_key"]
    assert "12345678-abcd-ef12-3456-987654321a12" in key

    [trigger] = wait_for(lambda: harness.pd.triggers_for(key, ROUTING_KEY))
    payload = trigger.body["payload"]
    assert payload["severity"] == "critical"
    summary = payload["summary"]
    assert summary.startswith("[P0] ") and len(summary) <= 1024
    assert "+333.67 %" in summary and "$1,001.00" in summary and "$300.00" in summary, summary
    details = payload["custom_details"]
    cost = details["cost"]
    assert amounts(cost) == {"actual": Decimal(1301), "expected": Decimal(300), "impact": Decimal(1001),
                             "increase_pct": Decimal("333.67")}
    assert cost["currency"] == "USD" and cost["forecast"] is False
    assert "Infrastructure Lead" in details["roles"]
    assert details["source"] == "aws-sns" and details["rule"] == "cloud-cost"
    assert any("cloud_cost_increase_pct = 333.67 is P0" in r for r in details["reasons"]), details["reasons"]
    assert trigger.body["links"][0]["href"].startswith("https://console.aws.amazon.com/cost-management/")

    time.sleep(QUIET_PERIOD)
    assert [e.dedup_key for e in harness.pd.events] == [key]


def test_sns_same_anomaly_with_larger_impact_updates_the_one_incident(harness: Harness, sns: Sns) -> None:
    anomaly = str(uuid.uuid4())
    first = one_alert(answer(sns.notify(cad_message(anomaly)), 202))
    key = first["dedup_key"]
    wait_for(lambda: harness.pd.triggers_for(key))
    # CAD re-sends the anomaly as it grows (getting-started-ad.html): a new MessageId, same anomalyId.
    second = one_alert(answer(sns.notify(cad_message(anomaly, actual=2301, expected=300)), 202))
    assert second["dedup_key"] == key and second["severity"] == "P0"
    assert second["incident_id"] == first["incident_id"]
    assert second["outcome"] == "attached"  # same severity, no re-page interval on the cloud-cost rule

    mine = [i for i in answer(sns.bridge.get("/api/v1/incidents"), 200)["incidents"] if i["dedup_key"] == key]
    assert len(mine) == 1, mine
    assert mine[0]["alert_count"] == 2 and mine[0]["severity"] == "P0"
    assert mine[0]["dimensions"]["cloud_cost_increase_pct"] == pytest.approx(667.0)
    time.sleep(QUIET_PERIOD)
    assert len(harness.pd.triggers_for(key)) == 1  # same severity: no second page


def test_sns_anomaly_growing_from_p2_to_p0_raises_and_pages_again(harness: Harness, sns: Sns) -> None:
    anomaly = str(uuid.uuid4())
    # +40 % on $300 expected ($120 over, above the $100 paging floor of severity.yaml) is P2.
    small = one_alert(answer(sns.notify(cad_message(anomaly, actual=420, expected=300)), 202))
    assert (small["severity"], small["action"], small["outcome"]) == ("P2", "page", "opened")
    key = small["dedup_key"]
    [p2] = wait_for(lambda: harness.pd.triggers_for(key))
    assert p2.body["payload"]["severity"] == "warning"

    large = one_alert(answer(sns.notify(cad_message(anomaly, actual=1500, expected=300)), 202))
    assert (large["severity"], large["outcome"], large["dedup_key"]) == ("P0", "raised", key)
    assert large["incident_id"] == small["incident_id"]
    triggers = wait_for(lambda: (t := harness.pd.triggers_for(key)) and len(t) == 2 and t)
    assert triggers[1].body["payload"]["severity"] == "critical"
    assert triggers[1].body["payload"]["summary"].startswith("[P0] ")
    assert amounts(triggers[1].body["payload"]["custom_details"]["cost"])["increase_pct"] == Decimal(400)

    incident = answer(sns.bridge.get(f"/api/v1/incidents/{key}"), 200)
    assert incident["severity"] == "P0" and incident["alert_count"] == 2
    assert any(e["kind"] == "severity_change" and "P2 -> P0" in e["description"] for e in incident["timeline"])
    assert len([i for i in answer(sns.bridge.get("/api/v1/incidents"), 200)["incidents"]
                if i["dedup_key"] == key]) == 1


def test_sns_redelivery_of_the_same_message_id_is_a_duplicate(harness: Harness, sns: Sns) -> None:
    envelope = sns.signer.notification(cad_message(str(uuid.uuid4())), topic=TOPIC)
    first = one_alert(answer(sns.post(envelope), 202))
    again = one_alert(answer(sns.post(envelope), 200))
    assert again.pop("duplicate") is True
    assert again == first
    wait_for(lambda: harness.pd.triggers_for(first["dedup_key"]))
    time.sleep(QUIET_PERIOD)
    assert len(harness.pd.triggers_for(first["dedup_key"])) == 1


def test_sns_budgets_text_below_every_threshold_is_recorded_not_paged(harness: Harness, sns: Sns) -> None:
    text = shared_text(BUDGETS_2019)
    item = one_alert(answer(sns.notify(text, subject="AWS Budgets: billingThree has exceeded your alert threshold"),
                            202))
    assert item["action"] == "record" and item["severity"] is None and item["outcome"] == "recorded"
    assert item["rule"] == "cloud-cost"
    [stored] = [a for a in answer(sns.bridge.get("/api/v1/alerts"), 200)["alerts"] if a["id"] == item["id"]]
    assert stored["alert"]["fields"]["kind"] == "budget"
    assert stored["alert"]["cost"]["increase_pct"] == "22.30"  # (36.69 - 30.00) / 30.00
    assert any("cloud_cost_increase_pct = 22.3 is below every threshold" in r
               for r in stored["decision"]["reasons"]), stored["decision"]["reasons"]
    assert_no_page_for(harness.pd, item["dedup_key"])
    assert harness.pd.events == []


def test_sns_forged_misaddressed_and_stale_messages_are_refused(harness: Harness, sns: Sns) -> None:
    # One changed byte in the signed Message.
    envelope = sns.signer.notification(cad_message(str(uuid.uuid4())), topic=TOPIC)
    envelope["Message"] = envelope["Message"].replace("1301", "1302", 1)
    body = answer(sns.post(envelope), 401)
    assert body["error"] == "sns_bad_signature" and "does not verify" in body["message"]

    # Properly signed, but for a topic this bridge does not take.
    body = answer(sns.notify(cad_message(str(uuid.uuid4())), topic=OTHER_TOPIC), 403)
    assert body["error"] == "sns_topic_not_allowed" and OTHER_TOPIC in body["message"]

    # Properly signed, but older than BRIDGE_SNS_MAX_AGE (900 s): a replay.
    old = sns_timestamp(datetime.now(UTC) - timedelta(minutes=20))
    body = answer(sns.notify(cad_message(str(uuid.uuid4())), timestamp=old), 403)
    assert body["error"] == "sns_stale" and "BRIDGE_SNS_MAX_AGE" in body["message"]

    # Signed, but dated an hour ahead of the bridge's clock.
    ahead = sns_timestamp(datetime.now(UTC) + timedelta(hours=1))
    body = answer(sns.notify(cad_message(str(uuid.uuid4())), timestamp=ahead), 403)
    assert body["error"] == "sns_stale" and "future" in body["message"]

    # A certificate URL off SNS's hosts is refused before anything is fetched.
    forged = sns.signer.notification(cad_message(str(uuid.uuid4())), topic=TOPIC)
    forged["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"
    assert answer(sns.post(forged), 401)["error"] == "sns_bad_url"

    assert answer(sns.bridge.get("/api/v1/alerts"), 200)["alerts"] == []
    time.sleep(QUIET_PERIOD)
    assert harness.pd.events == []


def test_sns_subscription_confirmation_without_auto_confirm_is_a_notice(harness: Harness, sns: Sns) -> None:
    token = "2336412f37fb687f5d51e6e2425ba1f3" + uuid.uuid4().hex * 4
    confirmation = sns.signer.subscription_confirmation(topic=TOPIC, token=token)
    body = answer(sns.post(confirmation), 200)
    assert body["alerts"] == []
    assert [n["kind"] for n in body["notices"]] == ["subscription_pending"]

    [notice] = answer(sns.bridge.get("/api/v1/notices"), 200)["notices"]
    assert notice["source"] == "aws-sns" and notice["kind"] == "subscription_pending"
    assert notice["details"]["SubscribeURL"] == confirmation["SubscribeURL"]
    assert confirmation["SubscribeURL"] in notice["message"]
    assert "BRIDGE_SNS_AUTO_CONFIRM" in notice["message"]
    assert harness.trap.requests == []  # nothing fetched: not the SubscribeURL, not the certificate

    # Deleting the subscription is reported too (and never undone automatically).
    goodbye = sns.signer.subscription_confirmation(topic=TOPIC, token=uuid.uuid4().hex,
                                                   kind="UnsubscribeConfirmation")
    assert [n["kind"] for n in answer(sns.post(goodbye), 200)["notices"]] == ["unsubscribed"]
    kinds = [n["kind"] for n in answer(sns.bridge.get("/api/v1/notices"), 200)["notices"]]
    assert kinds == ["unsubscribed", "subscription_pending"]  # newest first
    assert harness.trap.requests == []
    assert harness.pd.events == []


def test_sns_auto_confirm_does_fetch_so_the_egress_trap_is_real(harness: Harness) -> None:
    """Counter-test for the one above: with auto-confirm on, the bridge does GET the SubscribeURL (here into
    the trap, which refuses it), and records that the subscription still needs confirming."""
    harness.trap.expected = True
    signer = SnsSigner(harness.tmp / "sns-certs")
    bridge = harness.start(BRIDGE_SNS_TOPICS=TOPIC, BRIDGE_SNS_CERT_DIR=signer.cert_dir,
                           BRIDGE_SNS_AUTO_CONFIRM="true")
    confirmation = signer.subscription_confirmation(topic=TOPIC, token=uuid.uuid4().hex)
    body = answer(Sns(bridge, signer).post(confirmation), 200)
    assert [n["kind"] for n in body["notices"]] == ["subscription_pending"]
    assert harness.trap.requests == ["CONNECT sns.us-east-1.amazonaws.com:443"]
    [notice] = answer(bridge.get("/api/v1/notices"), 200)["notices"]
    assert notice["level"] == "error" and confirmation["SubscribeURL"] in notice["message"]


def test_sns_raw_message_delivery_is_refused_with_an_explanation(harness: Harness, sns: Sns) -> None:
    body = answer(sns.post(shared_text(BUDGETS_2019), raw=True, headers={"x-amz-sns-message-type": "Notification"}),
                  400)
    assert body["error"] == "sns_raw_delivery"
    assert "raw message delivery" in body["message"] and "RawMessageDelivery" in body["message"]
    assert answer(sns.bridge.get("/api/v1/alerts"), 200)["alerts"] == []


# ---------------------------------------------------------------------------------------------------------------
# Google Cloud budget notifications over Pub/Sub push


@dataclass
class Gcp:
    bridge: BridgeProcess
    signer: GoogleSigner
    harness: Harness

    def token(self, **kw: Any) -> str:
        kw.setdefault("audience", GCP_AUDIENCE)
        kw.setdefault("email", GCP_SA)
        return self.harness.secret(self.signer.token(**kw))

    def push(self, data: dict[str, Any], *, budget_id: str, message_id: str | None = None,
             token: str | None = "default") -> httpx2.Response:
        body = json.dumps(pubsub_push(data, message_id=message_id or str(uuid.uuid4().int)[:16],
                                      budget_id=budget_id))
        headers = {"User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"}
        if token == "default":
            token = self.token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.bridge.post("/webhooks/gcp-pubsub", body, token=None, headers=headers)


@pytest.fixture
def gcp(harness: Harness) -> Gcp:
    signer = GoogleSigner()
    certs = signer.write_certs(harness.tmp / "google-certs.json")
    bridge = harness.start(BRIDGE_GCP_AUDIENCE=GCP_AUDIENCE, BRIDGE_GCP_SERVICE_ACCOUNTS=GCP_SA,
                           BRIDGE_GCP_CERTS=certs)
    return Gcp(bridge, signer, harness)


def budget_data(cost: float, budget: float, *, threshold: float | None = None, forecast: float | None = None,
                name: str = "prod-monthly") -> dict[str, Any]:
    """A Cloud Billing budget notification (budgets-programmatic-notifications, "Notification format")."""
    data: dict[str, Any] = {"budgetDisplayName": name, "costAmount": cost,
                            "costIntervalStart": "2026-03-01T08:00:00Z", "budgetAmount": budget,
                            "budgetAmountType": "SPECIFIED_AMOUNT", "currencyCode": "USD"}
    if threshold is not None:
        data["alertThresholdExceeded"] = threshold
    if forecast is not None:
        data["forecastThresholdExceeded"] = forecast
    return data


def test_gcp_threshold_crossed_pages_and_repeats_are_duplicates(harness: Harness, gcp: Gcp) -> None:
    # +60 % over a $1,000 budget ($600 over): P1 per the matrix (50-100 %), above the $100 paging floor.
    data = budget_data(1600.0, 1000.0, threshold=1.5)
    item = one_alert(answer(gcp.push(data, budget_id="budget-p1"), 202))
    assert (item["severity"], item["action"], item["rule"], item["outcome"]) == ("P1", "page", "cloud-cost",
                                                                               "opened")
    key = item["dedup_key"]
    [trigger] = wait_for(lambda: harness.pd.triggers_for(key))
    payload = trigger.body["payload"]
    assert payload["severity"] == "error"
    assert "+60 %" in payload["summary"] and "$1,600.00" in payload["summary"], payload["summary"]
    cost = payload["custom_details"]["cost"]
    assert amounts(cost) == {"actual": Decimal(1600), "expected": Decimal(1000), "impact": Decimal(600),
                             "increase_pct": Decimal(60)}
    assert "Infrastructure Lead" in payload["custom_details"]["roles"]

    # Every later report of the period repeats the crossed threshold (new Pub/Sub messageId): a duplicate.
    again = one_alert(answer(gcp.push(data, budget_id="budget-p1"), 200))
    assert again["duplicate"] is True and again["dedup_key"] == key
    time.sleep(QUIET_PERIOD)
    assert len(harness.pd.triggers_for(key)) == 1


def test_gcp_brief_figures_160_of_100_are_p1_but_under_the_paging_floor(harness: Harness, gcp: Gcp) -> None:
    """$160 against a $100 budget is +60 % (P1 by the matrix), but only $60 over: the shipped `cost.min_amount`
    of 100 (rules/severity.yaml) records it instead of paging."""
    item = one_alert(answer(gcp.push(budget_data(160.0, 100.0, threshold=1.5), budget_id="budget-small"), 202))
    assert (item["severity"], item["action"], item["outcome"]) == ("P1", "record", "recorded")
    [stored] = answer(gcp.bridge.get("/api/v1/alerts"), 200)["alerts"]
    assert any("under the minimum 100 USD" in r for r in stored["decision"]["reasons"])
    assert_no_page_for(harness.pd, item["dedup_key"])


def test_gcp_routine_report_is_recorded_not_paged(harness: Harness, gcp: Gcp) -> None:
    item = one_alert(answer(gcp.push(budget_data(2500.0, 1000.0), budget_id="budget-routine"), 202))
    assert (item["action"], item["rule"], item["outcome"]) == ("record", "cloud-cost-budget-routine", "recorded")
    assert_no_page_for(harness.pd, item["dedup_key"])


def test_gcp_forecast_threshold_is_capped_at_p2(harness: Harness, gcp: Gcp) -> None:
    # +150 % would be P0; a forecast has not been spent yet: capped at P2 (severity.yaml cost.forecast_cap).
    item = one_alert(answer(gcp.push(budget_data(2500.0, 1000.0, forecast=1.2), budget_id="budget-fc"), 202))
    assert (item["severity"], item["action"]) == ("P2", "page")
    [trigger] = wait_for(lambda: harness.pd.triggers_for(item["dedup_key"]))
    payload = trigger.body["payload"]
    assert payload["severity"] == "warning"
    assert payload["custom_details"]["cost"]["forecast"] is True
    assert any("capped at P2" in r for r in payload["custom_details"]["reasons"])


def test_gcp_unauthenticated_pushes_are_refused(harness: Harness, gcp: Gcp) -> None:
    data = budget_data(1600.0, 1000.0, threshold=1.5)
    body = answer(gcp.push(data, budget_id="budget-x", token=gcp.token(audience="https://elsewhere.example/push")),
                  401)
    assert body["error"] == "gcp_bad_token" and "audience" in body["message"]
    body = answer(gcp.push(data, budget_id="budget-x", token=None), 401)
    assert body["error"] == "gcp_no_token"
    # Signed by another key under the same kid: a forgery.
    forger = GoogleSigner(kid=gcp.signer.kid)
    body = answer(gcp.push(data, budget_id="budget-x",
                           token=harness.secret(forger.token(audience=GCP_AUDIENCE, email=GCP_SA))), 401)
    assert body["error"] == "gcp_bad_token" and "signature" in body["message"]
    # Genuine token, but an unverified email / another service account: 403.
    assert answer(gcp.push(data, budget_id="budget-x", token=gcp.token(email_verified=False)), 403)["error"] \
        == "gcp_sa_not_allowed"
    assert answer(gcp.push(data, budget_id="budget-x", token=gcp.token(email="intruder@evil.example")), 403)[
        "error"] == "gcp_sa_not_allowed"
    expired = gcp.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    assert answer(gcp.push(data, budget_id="budget-x", token=expired), 401)["error"] == "gcp_token_expired"

    assert answer(gcp.bridge.get("/api/v1/alerts"), 200)["alerts"] == []
    time.sleep(QUIET_PERIOD)
    assert harness.pd.events == []


# ---------------------------------------------------------------------------------------------------------------
# Azure budget alerts (action group webhook, common alert schema)


@pytest.fixture
def azure(harness: Harness) -> BridgeProcess:
    harness.secrets |= {AZURE_TOKEN, WRONG_AZURE_TOKEN}
    return harness.start(BRIDGE_AZURE_TOKEN=AZURE_TOKEN)


def post_azure(bridge: BridgeProcess, body: Any, *, query_token: str | None = None,
               header_token: str | None = None) -> httpx2.Response:
    path = "/webhooks/azure" + (f"?token={query_token}" if query_token is not None else "")
    headers = {"X-Bridge-Token": header_token} if header_token is not None else {}
    return bridge.post(path, json.dumps(body), token=None, headers=headers)


def test_azure_actual_overrun_pages_p0_with_the_amounts(harness: Harness, azure: BridgeProcess) -> None:
    fixture = shared_json(AZURE_ACTUAL)
    item = one_alert(answer(post_azure(azure, fixture, query_token=AZURE_TOKEN), 202))
    assert (item["severity"], item["action"], item["rule"]) == ("P0", "page", "cloud-cost")
    key = item["dedup_key"]
    [trigger] = wait_for(lambda: harness.pd.triggers_for(key))
    payload = trigger.body["payload"]
    assert payload["severity"] == "critical"
    assert "+22,122 %" in payload["summary"] and "$11,111.00" in payload["summary"], payload["summary"]
    cost = payload["custom_details"]["cost"]
    assert amounts(cost) == {"actual": Decimal(11111), "expected": Decimal(50), "impact": Decimal(11061),
                             "increase_pct": Decimal(22122)}
    assert Decimal(cost["threshold"]) == Decimal(25) and cost["currency"] == "USD"
    assert "Infrastructure Lead" in payload["custom_details"]["roles"]

    # The same body again, authenticated by the X-Bridge-Token header instead: accepted, and a duplicate.
    again = one_alert(answer(post_azure(azure, fixture, header_token=AZURE_TOKEN), 200))
    assert again["duplicate"] is True and again["dedup_key"] == key
    time.sleep(QUIET_PERIOD)
    assert len(harness.pd.triggers_for(key)) == 1


def test_azure_forecast_is_capped_at_p2_and_header_token_works(harness: Harness, azure: BridgeProcess) -> None:
    item = one_alert(answer(post_azure(azure, shared_json(AZURE_FORECAST), header_token=AZURE_TOKEN), 202))
    assert (item["severity"], item["action"]) == ("P2", "page")
    [trigger] = wait_for(lambda: harness.pd.triggers_for(item["dedup_key"]))
    details = trigger.body["payload"]["custom_details"]
    assert trigger.body["payload"]["severity"] == "warning"
    assert details["cost"]["forecast"] is True and Decimal(details["cost"]["actual"]) == Decimal("1111.11")
    assert any("capped at P2" in r for r in details["reasons"])


def test_azure_wrong_or_missing_token_is_401(harness: Harness, azure: BridgeProcess) -> None:
    fixture = shared_json(AZURE_ACTUAL)
    body = answer(post_azure(azure, fixture, query_token=WRONG_AZURE_TOKEN), 401)
    assert body["error"] == "azure_bad_token"
    body = answer(post_azure(azure, fixture, header_token=WRONG_AZURE_TOKEN), 401)
    assert body["error"] == "azure_bad_token"
    body = answer(post_azure(azure, fixture), 401)
    assert body["error"] == "azure_no_token" and "?token=" in body["message"]
    for r in (body,):
        assert AZURE_TOKEN not in json.dumps(r) and WRONG_AZURE_TOKEN not in json.dumps(r)
    assert answer(azure.get("/api/v1/alerts"), 200)["alerts"] == []
    time.sleep(QUIET_PERIOD)
    assert harness.pd.events == []


def test_azure_without_a_configured_token_is_403_naming_the_variable(harness: Harness) -> None:
    harness.secrets |= {WRONG_AZURE_TOKEN}
    bridge = harness.start(BRIDGE_AZURE_TOKEN=None)
    body = answer(post_azure(bridge, shared_json(AZURE_ACTUAL), query_token=WRONG_AZURE_TOKEN), 403)
    assert body["error"] == "azure_token_not_configured" and "BRIDGE_AZURE_TOKEN" in body["message"]
    assert WRONG_AZURE_TOKEN not in json.dumps(body)
    assert harness.pd.events == []


def run_explain(tmp: Path, source: str, body: bytes) -> subprocess.CompletedProcess[str]:
    path = tmp / f"{source}-body.bin"
    path.write_bytes(body)
    env = bridge_env(tmp)
    return subprocess.run([sys.executable, "-m", "bridge", "rules", "explain", "--source", source, str(path),
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def _sns_body(tmp: Path) -> bytes:
    signer = SnsSigner(tmp / "explain-sns-certs")
    return json.dumps(signer.notification(cad_message(), topic=TOPIC)).encode()


def _gcp_body(tmp: Path) -> bytes:
    return json.dumps(pubsub_push(budget_data(1600.0, 1000.0, threshold=1.5), message_id="42",
                                  budget_id="budget-explain")).encode()


def _azure_body(tmp: Path) -> bytes:
    return json.dumps(shared_json(AZURE_ACTUAL)).encode()


def _datadog_body(tmp: Path) -> bytes:
    return (REPO / "webhooks/datadog/examples/05-cloud-cost-increase.json").read_bytes()


EXPLAIN_CASES: list[tuple[str, Callable[[Path], bytes], str, str]] = [
    ("aws-sns", _sns_body, "P0", "cloud-cost"),
    ("gcp-pubsub", _gcp_body, "P1", "cloud-cost"),
    ("azure", _azure_body, "P0", "cloud-cost"),
    ("datadog", _datadog_body, "P1", "datadog-cost-monitor"),
]


@pytest.mark.parametrize(("source", "make_body", "severity", "rule"), EXPLAIN_CASES,
                         ids=[c[0] for c in EXPLAIN_CASES])
def test_rules_explain_json_on_a_raw_body(tmp_path: Path, source: str, make_body: Callable[[Path], bytes],
                                          severity: str, rule: str) -> None:
    done = run_explain(tmp_path, source, make_body(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict), "one alert: one JSON object"
    assert {"severity", "action", "rule", "roles", "reasons"} <= set(result)
    assert (result["severity"], result["action"], result["rule"]) == (severity, "page", rule)
    assert "Infrastructure Lead" in result["roles"]
    assert any("cloud_cost_increase_pct" in r for r in result["reasons"]), result["reasons"]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("source", [c[0] for c in EXPLAIN_CASES])
def test_rules_explain_on_garbage_fails_cleanly(tmp_path: Path, source: str) -> None:
    done = run_explain(tmp_path, source, b"\x00\xffthis is not a payload{")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert "Error:" in done.stderr and f"{source}-body.bin" in done.stderr, done.stderr
    assert done.stdout.strip() == ""
