"""The AWS SNS receiver: authentication order, subscription handling, and CAD / Budgets parsing.

Real signed envelopes and the real certificate come from ../shared; CAD and Budgets payloads inside signed
envelopes are signed here with a test key (TestSigner, tests/support/sns_signer.py), because no signed production
CAD message exists.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import AuthError, BadPayload, Forbidden
from bridge.model import CLOUD_COST_INCREASE_PCT, AlertState
from bridge.receivers.aws_sns import (
    AwsSnsReceiver,
    alert_from_notification,
    parse_anomaly,
    parse_budget_text,
)
from bridge.receivers.base import Headers, InboundRequest, ReceiverContext
from bridge.receivers.sns_verify import CertificateUnavailable, parse_sns_timestamp
from tests.support.shared import shared_json, shared_path, shared_text
from tests.support.sns_signer import TestSigner

TOPIC = "arn:aws:sns:us-west-2:131990247566:dongie-standard-topic"
CERTS = "fixtures/aws-sns/certs"
NOTIFICATION = "fixtures/aws-sns/notification-sigv2-no-subject-2026-03-06-us-west-2.json"
CONFIRMATION = "fixtures/aws-sns/subscription-confirmation-sigv1-2026-03-06-us-west-2.json"
UNSUBSCRIBE = "fixtures/aws-sns/unsubscribe-confirmation-sigv2-2026-03-06-us-west-2.json"
REDACTED = "fixtures/aws-sns/budgets-forecasted-2026-01-28-eu-west-1.redacted.json"
LAMBDA = "fixtures/aws-sns/budgets-actual-daily-2023-03-05-us-east-1.lambda-record.json"


def no_fetch(url: str) -> bytes:
    raise AssertionError(f"unexpected fetch of {url}")


def request(envelope: dict[str, Any] | str, headers: dict[str, str] | None = None) -> InboundRequest:
    body = envelope if isinstance(envelope, str) else json.dumps(envelope)
    return InboundRequest(body=body.encode("utf-8"),
                          headers=Headers({"Content-Type": "text/plain; charset=UTF-8", **(headers or {})}))


def ctx(now: datetime, *, topics: list[str] | str | None = None, cert_dir: Any = None, fetch: Any = no_fetch,
        **settings: Any) -> ReceiverContext:
    return ReceiverContext(
        now=now,
        settings={"topic_allowlist": [TOPIC] if topics is None else topics,
                  "cert_dir": cert_dir if cert_dir is not None else str(shared_path(CERTS)), **settings},
        services={"fetch_url": fetch},
    )


def sent_at(envelope: dict[str, Any]) -> datetime:
    return parse_sns_timestamp(envelope["Timestamp"])


def wrap(message: str, **overrides: Any) -> dict[str, Any]:
    """An unsigned Notification envelope around `message` (parse() does not verify)."""
    env = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:cost",
           "Message": message, "Timestamp": "2026-03-06T20:00:00.000Z", "SignatureVersion": "2",
           "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"}
    env.update(overrides)
    return env


NOW = datetime(2026, 3, 6, 20, 0, tzinfo=UTC)


# --- authentication ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [NOTIFICATION, CONFIRMATION, UNSUBSCRIBE], ids=["notification", "confirm",
                                                                                   "unsubscribe"])
def test_real_envelopes_authenticate(name: str) -> None:
    envelope = shared_json(name)
    AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope) + timedelta(seconds=5)))


def test_unlisted_topic_is_403() -> None:
    envelope = shared_json(NOTIFICATION)
    with pytest.raises(Forbidden) as err:
        AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope), topics=["arn:aws:sns:x:1:other"]))
    assert err.value.status == 403 and TOPIC in err.value.message


@pytest.mark.parametrize("topics", [[], "", None], ids=["empty-list", "empty-string", "unset"])
def test_empty_allowlist_rejects_all_before_any_fetch(topics: Any) -> None:
    envelope = shared_json(NOTIFICATION)
    context = ReceiverContext(now=sent_at(envelope), settings={} if topics is None else {"topic_allowlist": topics},
                              services={"fetch_url": no_fetch})
    with pytest.raises(Forbidden, match="BRIDGE_SNS_TOPICS"):
        AwsSnsReceiver().authenticate(request(envelope), context)


def test_wildcard_and_comma_separated_allowlists() -> None:
    envelope = shared_json(NOTIFICATION)
    AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope), topics=["*"]))
    AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope), topics=f"arn:aws:sns:x:1:a, {TOPIC}"))


def test_old_timestamp_is_stale() -> None:
    envelope = shared_json(NOTIFICATION)
    with pytest.raises(Forbidden, match="stale") as err:
        AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope) + timedelta(hours=2)))
    assert err.value.code == "sns_stale"


def test_max_age_is_configurable_and_can_be_disabled() -> None:
    envelope = shared_json(NOTIFICATION)
    later = sent_at(envelope) + timedelta(minutes=10)
    with pytest.raises(Forbidden, match="stale"):
        AwsSnsReceiver().authenticate(request(envelope), ctx(later, max_age_seconds=300))
    AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope) + timedelta(days=30),
                                                         max_age_seconds=0))


def test_future_timestamp_rejected() -> None:
    envelope = shared_json(NOTIFICATION)
    with pytest.raises(Forbidden, match="future"):
        AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope) - timedelta(hours=1)))


def test_production_clock_rejects_expired_certificate() -> None:
    envelope = shared_json(NOTIFICATION)
    with pytest.raises(AuthError) as err:
        AwsSnsReceiver().authenticate(request(envelope), ctx(datetime(2026, 11, 28, tzinfo=UTC)))
    assert err.value.code == "sns_certificate_expired"


def test_redacted_budgets_envelope_fails_signature() -> None:
    envelope = shared_json(REDACTED)
    with pytest.raises(AuthError, match="does not verify"):
        AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope), topics=["*"]))


def test_lambda_record_needs_an_unpublished_certificate() -> None:
    envelope = shared_json(LAMBDA)

    def offline(url: str) -> bytes:
        raise OSError("air-gapped")

    with pytest.raises(CertificateUnavailable):
        AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope), topics=["*"], fetch=offline))


@pytest.mark.parametrize(("header", "value"), [
    pytest.param("x-amz-sns-message-id", "22b80b92\n2026-03-06 CRITICAL forged", id="newline"),
    pytest.param("x-amz-sns-topic-arn", f"{TOPIC}\r", id="carriage-return"),
    pytest.param("x-amz-sns-subscription-arn", f"{TOPIC}:\x1b[2Jb24e11a2", id="escape-sequence"),
    pytest.param("x-amz-sns-message-type", "Notification\x00", id="nul"),
    pytest.param("X-Amz-Sns-Message-Id", "22b80b92\x7f", id="del-mixed-case-name"),
    pytest.param("x-amz-sns-message-id", "22b80b92\u2028", id="line-separator"),
])
def test_sns_header_with_control_characters_is_401_before_any_fetch(tmp_path: Path, header: str,
                                                                      value: str) -> None:
    envelope = shared_json(NOTIFICATION)
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return (shared_path(CERTS) / "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem").read_bytes()

    context = ctx(sent_at(envelope), cert_dir=str(tmp_path), fetch=fetch)  # empty directory: would fetch
    with pytest.raises(AuthError) as err:
        AwsSnsReceiver().authenticate(request(envelope, {header: value}), context)
    assert err.value.status == 401 and err.value.code == "sns_bad_header"
    assert calls == []
    # With a clean value the same request fetches the certificate and verifies.
    clean = "Notification" if header.lower() == "x-amz-sns-message-type" else "22b80b92"
    AwsSnsReceiver().authenticate(request(envelope, {header: clean}), context)
    assert calls == [envelope["SigningCertURL"]]


@pytest.mark.parametrize(("key", "value"), [
    pytest.param("SigningCertURL", "https://sns.us-west-2.amazonaws.com/x/../"
                 "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem", id="cert-url-dotdot"),
    pytest.param("SigningCertURL", "https://sns.us-west-2.amazonaws.com/"
                 "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem\n2026 CRITICAL forged",
                 id="cert-url-newline"),
    pytest.param("UnsubscribeURL", "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe%0aCRITICAL",
                 id="unsubscribe-url-encoded-newline"),
])
def test_malformed_envelope_url_is_401_before_any_fetch(tmp_path: Path, key: str, value: str) -> None:
    envelope = dict(shared_json(NOTIFICATION), **{key: value})
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        raise AssertionError("must not fetch")

    with pytest.raises(AuthError) as err:
        AwsSnsReceiver().authenticate(request(envelope), ctx(sent_at(envelope), cert_dir=str(tmp_path), fetch=fetch))
    assert err.value.status == 401 and err.value.code == "sns_bad_url"
    assert calls == []


def test_unfetchable_certificate_is_503_with_a_reason(tmp_path: Path) -> None:
    envelope = shared_json(NOTIFICATION)
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return b"<html><body>502 Bad Gateway</body></html>"  # a proxy's error page, not a PEM

    receiver = AwsSnsReceiver()
    for _ in range(2):  # a failure is not cached: the next delivery (SNS's retry) fetches again
        with pytest.raises(CertificateUnavailable) as err:
            receiver.authenticate(request(envelope), ctx(sent_at(envelope), cert_dir=str(tmp_path), fetch=fetch))
        assert err.value.status == 503
        assert err.value.to_json() == {"error": "sns_certificate_unavailable", "message": err.value.message}
        assert "not a PEM" in err.value.message
    assert calls == [envelope["SigningCertURL"]] * 2


def test_raw_delivery_header_is_400() -> None:
    text = shared_text("fixtures/aws-budgets/budgets-actual-monthly-2026-02-17.raw-delivery.txt")
    for method in ("authenticate", "parse"):
        with pytest.raises(BadPayload, match="raw message delivery") as err:
            getattr(AwsSnsReceiver(), method)(request(text, {"x-amz-sns-rawdelivery": "true"}), ctx(NOW))
        assert err.value.status == 400


def test_raw_body_without_header_is_400() -> None:
    text = shared_text("fixtures/aws-budgets/budgets-actual-monthly-2026-02-17.raw-delivery.txt")
    with pytest.raises(BadPayload, match="raw message delivery"):
        AwsSnsReceiver().authenticate(request(text), ctx(NOW))


def test_message_type_header_must_match_body() -> None:
    envelope = shared_json(NOTIFICATION)
    with pytest.raises(BadPayload, match="does not match"):
        AwsSnsReceiver().parse(request(envelope, {"x-amz-sns-message-type": "SubscriptionConfirmation"}),
                               ctx(NOW))


def test_certificates_are_cached_across_requests(tmp_path: Path) -> None:
    pem = (shared_path(CERTS) / "SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem").read_bytes()
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return pem

    receiver = AwsSnsReceiver()
    envelope = shared_json(NOTIFICATION)
    for _ in range(3):
        receiver.authenticate(request(envelope), ctx(sent_at(envelope), cert_dir=str(tmp_path), fetch=fetch))
    assert len(calls) == 1


# --- subscription messages --------------------------------------------------------------------------------------


def test_subscription_pending_without_auto_confirm() -> None:
    envelope = shared_json(CONFIRMATION)
    parsed = AwsSnsReceiver().parse(request(envelope), ctx(sent_at(envelope)))
    assert parsed.alerts == []
    [notice] = parsed.notices
    assert notice.kind == "subscription_pending" and notice.level == "warning"
    assert envelope["SubscribeURL"] in notice.message
    assert notice.details["TopicArn"] == TOPIC and notice.details["MessageId"] == envelope["MessageId"]


def test_subscription_auto_confirmed() -> None:
    envelope = shared_json(CONFIRMATION)
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return (b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>" + TOPIC.encode()
                + b":b24e11a2</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>")

    parsed = AwsSnsReceiver().parse(request(envelope), ctx(sent_at(envelope), fetch=fetch, auto_confirm=True))
    [notice] = parsed.notices
    assert fetched == [envelope["SubscribeURL"]]
    assert notice.kind == "subscription_confirmed"
    assert notice.details["SubscriptionArn"] == f"{TOPIC}:b24e11a2"
    assert notice.details["MessageId"] == envelope["MessageId"]


def test_auto_confirm_refuses_a_foreign_subscribe_url() -> None:
    envelope = shared_json(CONFIRMATION)
    envelope["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription"
    with pytest.raises(AuthError, match="SubscribeURL"):
        AwsSnsReceiver().parse(request(envelope), ctx(sent_at(envelope), auto_confirm="true"))


def test_auto_confirm_failure_leaves_instructions() -> None:
    envelope = shared_json(CONFIRMATION)

    def fetch(url: str) -> bytes:
        raise OSError("timeout")

    [notice] = AwsSnsReceiver().parse(request(envelope), ctx(sent_at(envelope), fetch=fetch,
                                                             auto_confirm=True)).notices
    assert notice.kind == "subscription_pending" and notice.level == "error"
    assert envelope["SubscribeURL"] in notice.message


def test_unsubscribe_confirmation_notice() -> None:
    envelope = shared_json(UNSUBSCRIBE)
    [notice] = AwsSnsReceiver().parse(request(envelope), ctx(sent_at(envelope), auto_confirm=True)).notices
    assert notice.kind == "unsubscribed" and notice.level == "warning"
    assert notice.details["TopicArn"] == TOPIC and notice.details["MessageId"] == envelope["MessageId"]


# --- Cost Anomaly Detection -------------------------------------------------------------------------------------

NEW_SPEND_CAD = {
    # Hand-derived from the documented example: expected spend 0, so AWS omits totalImpactPercentage
    # (API_Impact.html: "When TotalExpectedSpend is zero, this field is omitted").
    "accountId": "123456789012",
    "anomalyDetailsLink": "https://console.aws.amazon.com/cost-management/home#/anomaly-detection/monitors/m/anomalies/new-1",
    "anomalyEndDate": "2026-03-05T00:00:00Z",
    "anomalyId": "new-spend-0001",
    "anomalyScore": {"currentScore": 0.9, "maxScore": 0.9},
    "anomalyStartDate": "2026-03-04T00:00:00Z",
    "dimensionalValue": "Amazon SageMaker",
    "impact": {"maxImpact": 800, "totalActualSpend": 1200, "totalExpectedSpend": 0, "totalImpact": 1200},
    "monitorArn": "arn:aws:ce::123456789012:anomalymonitor/m",
    "rootCauses": [{"service": "Amazon SageMaker", "region": "us-east-1", "usageType": "ml.p4d.24xlarge"}],
    "subscriptionId": "s", "subscriptionName": "immediate",
}

COMPUTED_CAD = {"anomalyId": "computed-1", "dimensionalValue": "AWS Lambda",
                "impact": {"totalActualSpend": 150, "totalExpectedSpend": 100, "totalImpact": 50}}


def cad_message(name: str) -> dict[str, Any]:
    if name == "new-spend":
        return NEW_SPEND_CAD
    if name == "computed":
        return COMPUTED_CAD
    return shared_json(f"fixtures/aws-cost-anomaly/{name}")


@pytest.mark.parametrize(("name", "pct", "new_spend", "impact", "service", "tags", "title_part"), [
    pytest.param("cad-sns-message-documented-current.json", "333.67", False, "1001", "AnomalousServiceName",
                 {("service", "AnomalousServiceName"), ("region", "AnomalousRegionName"),
                  ("account", "AnomalousLinkedAccount"), ("usage_type", "AnomalousUsageType"),
                  ("account_name", "AnomalousLinkedAccountName")},
                 "ServiceName +333.67 % ($1,001.00 over $300.00 expected)", id="current-333.67"),
    pytest.param("cad-sns-message-documented-2021-no-percentage.json", None, False, "1001", "AnomalousServiceName",
                 {("service", "AnomalousServiceName"), ("region", "AnomalousRegionName"),
                  ("account", "AnomalousLinkedAccount"), ("usage_type", "AnomalousUsageType")},
                 "$1,001.00 impact (no percentage", id="2021-format-no-percentage"),
    pytest.param("cad-sns-message-root-cause-service-only.json", "333.67", False, "1001",
                 "Amazon Simple Notification Service", {("service", "Amazon Simple Notification Service")},
                 "Amazon Simple Notification Service +333.67 %", id="service-only-root-cause"),
    pytest.param("new-spend", None, True, "1200", "Amazon SageMaker",
                 {("service", "Amazon SageMaker"), ("region", "us-east-1"), ("usage_type", "ml.p4d.24xlarge")},
                 "Amazon SageMaker new spend ($1,200.00, nothing expected)", id="expected-zero-new-spend"),
    pytest.param("computed", "50.00", False, "50", "AWS Lambda", set(), "AWS Lambda +50 %",
                 id="percentage-computed-when-absent"),
])
def test_cost_anomaly(name: str, pct: str | None, new_spend: bool, impact: str, service: str,
                      tags: set[tuple[str, str]], title_part: str) -> None:
    message = cad_message(name)
    envelope = wrap(json.dumps(message), MessageId="sns-msg-1")
    [alert] = AwsSnsReceiver().parse(request(envelope), ctx(NOW)).alerts
    assert alert.source == "aws-sns" and alert.state is AlertState.FIRING
    assert alert.categories == frozenset({"cloud_cost"})
    assert alert.group_key == f"aws-cad:{message['anomalyId']}"
    assert alert.source_event_id == "sns-msg-1"
    assert alert.received_at == NOW
    assert title_part in alert.title
    assert alert.service == service
    assert set(alert.tags) == tags
    assert alert.cost is not None
    assert alert.cost.impact == Decimal(impact)
    assert alert.cost.new_spend is new_spend
    assert alert.fields["kind"] == "anomaly" and alert.fields["provider"] == "aws"
    assert alert.fields["new_spend"] == ("true" if new_spend else "false")
    assert alert.fields["forecast"] == "false" and alert.fields["currency"] == "USD"
    assert alert.fields["anomaly_id"] == message["anomalyId"]
    assert alert.fields["impact"] == impact
    if pct is None:
        # Never default a missing percentage to 0 (cloud-cost.md §0 point 4).
        assert alert.cost.increase_pct is None
        assert CLOUD_COST_INCREASE_PCT not in alert.dimensions
    else:
        assert alert.cost.increase_pct == Decimal(pct)
        assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: float(pct)}
    if message.get("anomalyDetailsLink"):
        assert alert.links[0].href == message["anomalyDetailsLink"]


def test_repeated_anomaly_with_growing_impact_keeps_the_group_key() -> None:
    first = dict(NEW_SPEND_CAD)
    grown = json.loads(json.dumps(NEW_SPEND_CAD))
    grown["impact"].update(totalActualSpend=3000, totalImpact=3000)
    a1 = alert_from_notification(wrap(json.dumps(first), MessageId="a"), received_at=NOW)
    a2 = alert_from_notification(wrap(json.dumps(grown), MessageId="b"),
                                 received_at=NOW + timedelta(hours=8))
    assert a1.group_key == a2.group_key == "aws-cad:new-spend-0001"
    assert a1.source_event_id != a2.source_event_id
    assert a2.cost is not None and a2.cost.impact == Decimal("3000")


def test_parse_anomaly_is_pure_and_reads_the_documented_fields() -> None:
    facts = parse_anomaly(shared_json("fixtures/aws-cost-anomaly/cad-sns-message-documented-current.json"))
    assert (facts.actual, facts.expected, facts.impact) == (Decimal("1301"), Decimal("300"), Decimal("1001"))
    assert facts.pct_source == "totalImpactPercentage"
    assert facts.root_causes[0].contribution == Decimal("601")
    assert facts.subscription_name == "alertSubscription"


def test_anomaly_without_id_is_not_a_cad_message() -> None:
    with pytest.raises(BadPayload):
        parse_anomaly({"impact": {}})


# --- AWS Budgets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "pct", "period", "forecast", "amount", "baseline", "threshold", "period_start"), [
    pytest.param("budgets-forecasted-monthly-2026-01-28.txt", "4650.00", "monthly", True, "0.95", "0.02", "0.00",
                 "2026-01-01", id="forecasted-monthly-4650"),
    pytest.param("budgets-actual-daily-2023-03-05.txt", "126.67", "daily", False, "1.70", "0.75", "0.75",
                 "2023-03-04", id="daily-vs-per-day-threshold-126.7"),
    pytest.param("budgets-actual-monthly-2019-10-28.txt", "22.30", "monthly", False, "36.69", "30.00", "24.00",
                 "2019-10-01", id="monthly-2019-22.3"),
    pytest.param("budgets-actual-monthly-2026-02-17.raw-delivery.txt", "-62.28", "monthly", False, "18.86",
                 "50.00", "0.50", "2026-02-01", id="monthly-2026-02-minus-62.3"),
])
def test_parse_budget_text(name: str, pct: str, period: str, forecast: bool, amount: str, baseline: str,
                           threshold: str, period_start: str) -> None:
    facts = parse_budget_text(shared_text(f"fixtures/aws-budgets/{name}"))
    assert facts.status == "ok"
    assert facts.increase_pct == Decimal(pct)
    assert facts.period == period and facts.forecast is forecast
    assert facts.amount == Decimal(amount)
    assert facts.baseline == Decimal(baseline)
    assert facts.threshold == Decimal(threshold) and facts.threshold_operator == ">"
    assert facts.period_start == period_start
    assert facts.currency == "USD"


def test_daily_budget_is_not_compared_with_budgeted_amount() -> None:
    # cloud-cost.md §7 pitfall 4: against the $5.00 Budgeted Amount it would read -66 %.
    facts = parse_budget_text(shared_text("fixtures/aws-budgets/budgets-actual-daily-2023-03-05.txt"))
    assert facts.budgeted_amount == Decimal("5.00")
    assert facts.increase_pct == Decimal("126.67")


@pytest.mark.parametrize(("name", "pct", "group_key", "forecast"), [
    pytest.param(REDACTED, "4650.00",
                 "aws-budget:arn:aws:sns:eu-west-1:444444444444:budget-alerts:test:2026-01-01:FORECASTED", True,
                 id="redacted-forecasted"),
    pytest.param(LAMBDA, "126.67",
                 "aws-budget:arn:aws:sns:us-east-1:265627204426:killswitch:killswitch:2023-03-04:ACTUAL", False,
                 id="lambda-record-daily"),
])
def test_budget_envelopes(name: str, pct: str, group_key: str, forecast: bool) -> None:
    envelope = shared_json(name)
    [alert] = AwsSnsReceiver().parse(request(envelope), ctx(NOW)).alerts
    assert alert.group_key == group_key
    assert alert.source_event_id == envelope["MessageId"]
    assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: float(pct)}
    assert alert.fields["kind"] == "budget" and alert.fields["parse_status"] == "ok"
    assert alert.fields["forecast"] == ("true" if forecast else "false")
    assert alert.fields["budget_name"] and alert.fields["account"] and alert.fields["amount"]
    assert alert.cost is not None and alert.cost.forecast is forecast
    assert alert.links and "budgets" in alert.links[0].href
    assert "AWS budget" in alert.title and "%" in alert.title


def test_budget_group_key_ignores_threshold_but_not_period_or_type() -> None:
    text = shared_text("fixtures/aws-budgets/budgets-actual-monthly-2019-10-28.txt")
    base = alert_from_notification(wrap(text), received_at=NOW).group_key
    higher = text.replace("> $24.00", "> $30.00").replace("$24.00 for", "$30.00 for")
    assert alert_from_notification(wrap(higher, MessageId="m-2"), received_at=NOW).group_key == base
    next_month = text.replace("October 28, 2019", "November 02, 2019")
    assert alert_from_notification(wrap(next_month), received_at=NOW).group_key != base
    forecast = text.replace("Alert Type: ACTUAL", "Alert Type: FORECASTED").replace("ACTUAL Amount",
                                                                                     "FORECASTED Amount")
    assert alert_from_notification(wrap(forecast), received_at=NOW).group_key != base
    # Received later, same message: same key (no receipt timestamps in group keys).
    assert alert_from_notification(wrap(text), received_at=NOW + timedelta(days=3)).group_key == base


def test_budget_from_another_account_on_the_same_topic_gets_its_own_key() -> None:
    text = shared_text("fixtures/aws-budgets/budgets-actual-monthly-2026-02-17.raw-delivery.txt")
    alert = alert_from_notification(wrap(text), received_at=NOW)  # topic account 123456789012, budget 3333...
    assert ":333333333333/MonthlyBudget-" in alert.group_key


# --- anything else is kept, never dropped ----------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    "This message uses signature version 2.",
    '{"some": "json"}',
    '{"anomalyId": ',
    "",
], ids=["plain-text", "json-not-anomaly", "broken-json", "empty"])
def test_unrecognized_message_is_kept_as_budget_alert(message: str) -> None:
    [alert] = AwsSnsReceiver().parse(request(wrap(message)), ctx(NOW)).alerts
    assert alert.fields["kind"] == "budget" and alert.fields["parse_status"] == "unrecognized"
    assert alert.dimensions == {}
    assert alert.cost is not None and alert.cost.increase_pct is None
    assert alert.group_key.startswith("aws-sns:arn:aws:sns:us-east-1:123456789012:cost:sha256:")
    assert alert.categories == frozenset({"cloud_cost"})


def test_real_hello_notification_is_kept() -> None:
    envelope = shared_json(NOTIFICATION)
    [alert] = AwsSnsReceiver().parse(request(envelope), ctx(sent_at(envelope))).alerts
    assert alert.source_event_id == envelope["MessageId"]
    assert alert.fields["parse_status"] == "unrecognized"
    assert "This message uses signature version 2." in alert.title


def test_partial_budget_text_is_kept_without_percentage() -> None:
    text = ("AWS Budget Notification March 05, 2026\nAWS Account 123456789012\n\nSomething about an action.\n\n"
            "Budget Name: prod\nAlert Type: ACTUAL\n")
    facts = parse_budget_text(text)
    assert facts.status == "partial" and facts.budget_name == "prod" and facts.increase_pct is None
    [alert] = AwsSnsReceiver().parse(request(wrap(text)), ctx(NOW)).alerts
    assert alert.fields["parse_status"] == "partial" and alert.dimensions == {}


def test_parse_budget_text_unrecognized() -> None:
    assert parse_budget_text("hello").status == "unrecognized"


def test_zero_baseline_budget_is_new_spend() -> None:
    text = shared_text("fixtures/aws-budgets/budgets-actual-monthly-2019-10-28.txt").replace(
        "Budgeted Amount: $30.00", "Budgeted Amount: $0.00")
    [alert] = AwsSnsReceiver().parse(request(wrap(text)), ctx(NOW)).alerts
    assert alert.cost is not None and alert.cost.new_spend and alert.cost.increase_pct is None
    assert alert.dimensions == {} and alert.fields["new_spend"] == "true"


def test_not_an_envelope_is_400() -> None:
    for body in ("[]", '{"Type": "Other"}', "\xff"):
        with pytest.raises(BadPayload):
            AwsSnsReceiver().parse(request(body), ctx(NOW))


# --- end to end with a signer of our own: verified CAD message ------------------------------------------------


def test_signed_cad_notification_end_to_end(tmp_path: Path) -> None:
    signer = TestSigner(tmp_path)
    topic = "arn:aws:sns:us-east-1:123456789012:cost-anomalies"
    envelope = signer.sign({
        "Type": "Notification", "MessageId": "cad-1", "TopicArn": topic,
        "Message": json.dumps(shared_json("fixtures/aws-cost-anomaly/cad-sns-message-documented-current.json")),
        "Timestamp": "2026-03-06T20:00:00.000Z",
    })
    context = ctx(NOW + timedelta(seconds=3), topics=[topic], cert_dir=str(tmp_path))
    receiver = AwsSnsReceiver()
    receiver.authenticate(request(envelope), context)
    [alert] = receiver.parse(request(envelope), context).alerts
    assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: 333.67}
    assert alert.group_key == "aws-cad:12345678-abcd-ef12-3456-987654321a12"
    tampered = dict(envelope, Message=envelope["Message"].replace("333.67", "3.67"))
    with pytest.raises(AuthError):
        receiver.authenticate(request(tampered), context)
