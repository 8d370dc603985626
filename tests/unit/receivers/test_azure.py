"""The Azure action-group receiver: shared-secret check and budget parsing in both schemas."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bridge.errors import AuthError, BadPayload, Forbidden, RequestError
from bridge.model import CLOUD_COST_INCREASE_PCT, AlertState
from bridge.receivers.azure import AzureReceiver, normalize_date, parse_azure_budget
from bridge.receivers.base import Headers, InboundRequest, ReceiverContext
from tests.support.shared import shared_json, shared_path

NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-token-value-0123456789abcdef"


def ctx(token: str | None = SECRET) -> ReceiverContext:
    return ReceiverContext(now=NOW, settings={} if token is None else {"token": token})


def req(body: Any, *, headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> InboundRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest(body=raw, headers=Headers(headers or {}), query=query or {})


def fixture_body(name: str) -> bytes:
    return shared_path(f"fixtures/azure-budget/{name}").read_bytes()


# --- authentication ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "query"), [
    pytest.param({}, {"token": SECRET}, id="query-parameter"),
    pytest.param({"X-Bridge-Token": SECRET}, {}, id="header"),
    pytest.param({"Authorization": f"Bearer {SECRET}"}, {}, id="bearer"),
    pytest.param({"Authorization": "Basic " + base64.b64encode(f"azure:{SECRET}".encode()).decode()}, {},
                 id="basic-auth-password"),
])
def test_token_accepted(headers: dict[str, str], query: dict[str, str]) -> None:
    AzureReceiver().authenticate(req(b"{}", headers=headers, query=query), ctx())


@pytest.mark.parametrize(("headers", "query", "error"), [
    pytest.param({}, {}, AuthError, id="missing"),
    pytest.param({}, {"token": "wrong"}, AuthError, id="wrong-query"),
    pytest.param({"X-Bridge-Token": SECRET[:-1]}, {}, AuthError, id="prefix-of-secret"),
    pytest.param({"Authorization": "Bearer wrong"}, {}, AuthError, id="wrong-bearer"),
])
def test_token_rejected_without_echoing_it(headers: dict[str, str], query: dict[str, str],
                                           error: type[RequestError]) -> None:
    with pytest.raises(error) as err:
        AzureReceiver().authenticate(req(b"{}", headers=headers, query=query), ctx())
    assert err.value.status == 401
    text = str(err.value) + json.dumps(err.value.to_json())
    assert SECRET not in text and "wrong" not in text.replace("wrong token", "")


def test_unconfigured_token_rejects_everything() -> None:
    for token in (None, ""):
        with pytest.raises(Forbidden, match="BRIDGE_AZURE_TOKEN"):
            AzureReceiver().authenticate(req(b"{}", query={"token": ""}), ctx(token))


# --- budgets ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "pct", "forecast", "amount", "budget", "threshold", "threshold_pct",
                          "group_key"), [
    pytest.param("aip-budget-notification-tutorial.json", "100", False, "100", "50", "40", "80",
                 "azure-budget:/subscriptions/<guid>/providers/microsoft.consumption/budgets/budgetname:"
                 "2018-06-01:actual", id="legacy-tutorial-plus-100-fraction-threshold"),
    pytest.param("aip-budget-notification-test-action.json", "-88.89", False, "1111.32", "10000", "8000", "80",
                 "azure-budget:/subscriptions/11111111-1111-1111-1111-111111111111/resourcegroups/test-rg/"
                 "providers/microsoft.consumption/budgets/test-budgetname:2021-11-17:actual",
                 id="legacy-test-action-minus-88.9-absolute-threshold"),
    pytest.param("common-schema-costalerts-actual.json", "22122", False, "11111.00", "50.00", "25.00", "50",
                 "azure-budget:/subscriptions/11111111-1111-1111-1111-111111111111/providers/"
                 "microsoft.consumption/budgets/test_actual_cost_budget:2022-11-01:actual",
                 id="costalerts-actual-plus-22122"),
    pytest.param("common-schema-costalerts-forecasted.json", "2122.22", True, "1111.11", "50.00", "50.00", "100",
                 "azure-budget:/subscriptions/11111111-1111-1111-1111-111111111111/providers/"
                 "microsoft.consumption/budgets/test_forcasted_budget:2022-11-01:forecasted",
                 id="costalerts-forecasted-plus-2122.22"),
])
def test_budget_fixtures(name: str, pct: str, forecast: bool, amount: str, budget: str, threshold: str,
                         threshold_pct: str, group_key: str) -> None:
    [alert] = AzureReceiver().parse(req(fixture_body(name)), ctx()).alerts
    assert alert.source == "azure" and alert.state is AlertState.FIRING
    assert alert.categories == frozenset({"cloud_cost"})
    assert alert.dimensions == {CLOUD_COST_INCREASE_PCT: float(pct)}
    assert alert.group_key == group_key
    assert alert.source_event_id.startswith("sha256:")
    cost = alert.cost
    assert cost is not None
    assert cost.increase_pct == Decimal(pct)
    assert cost.actual == Decimal(amount) and cost.budget == Decimal(budget) and cost.expected == Decimal(budget)
    assert cost.threshold == Decimal(threshold)
    assert cost.forecast is forecast and cost.currency == "USD"
    f = alert.fields
    assert f["kind"] == "budget" and f["provider"] == "azure" and f["currency"] == "USD"
    assert f["forecast"] == ("true" if forecast else "false") and f["new_spend"] == "false"
    assert f["threshold_pct"] == threshold_pct
    assert f["budget_name"] and f["account"]
    assert "Azure budget" in alert.title and "%" in alert.title


def test_forecast_keeps_the_spent_amount_too() -> None:
    [alert] = AzureReceiver().parse(req(fixture_body("common-schema-costalerts-forecasted.json")), ctx()).alerts
    assert alert.fields["spent_amount"] == "999.99" and alert.fields["forecast_amount"] == "1111.11"


def test_same_alert_id_different_notifications_are_distinct_events() -> None:
    # Both documented CostAlerts samples carry alertId .../alerts/Test_Alert.
    actual = AzureReceiver().parse(req(fixture_body("common-schema-costalerts-actual.json")), ctx()).alerts[0]
    forecast = AzureReceiver().parse(req(fixture_body("common-schema-costalerts-forecasted.json")),
                                     ctx()).alerts[0]
    assert actual.fields["alert_id"] == forecast.fields["alert_id"]
    assert actual.source_event_id != forecast.source_event_id


def test_retry_of_the_same_body_is_the_same_event() -> None:
    payload = shared_json("fixtures/azure-budget/common-schema-costalerts-actual.json")
    compact = json.dumps(payload).encode()
    pretty = json.dumps(payload, indent=4).encode()
    a = AzureReceiver().parse(req(compact), ctx()).alerts[0]
    b = AzureReceiver().parse(req(pretty), ctx()).alerts[0]
    assert a.source_event_id == b.source_event_id


def test_legacy_and_common_schema_of_one_budget_share_the_group_key() -> None:
    legacy = {"schemaId": "AIP Budget Notification", "data": {
        "SubscriptionId": "11111111-1111-1111-1111-111111111111", "SubscriptionName": "s",
        "ResourceGroup": "", "SpendingAmount": "11111", "BudgetStartDate": "11/1/2022", "Budget": "50",
        "Unit": "USD", "BudgetName": "Test_actual_cost_budget", "BudgetType": "Cost",
        "NotificationThresholdAmount": "0.5"}}
    common = AzureReceiver().parse(req(fixture_body("common-schema-costalerts-actual.json")), ctx()).alerts[0]
    old = AzureReceiver().parse(req(legacy), ctx()).alerts[0]
    assert old.group_key == common.group_key
    assert old.dimensions == common.dimensions


def test_higher_threshold_same_budget_same_incident() -> None:
    payload = shared_json("fixtures/azure-budget/common-schema-costalerts-actual.json")
    first = AzureReceiver().parse(req(payload), ctx()).alerts[0]
    payload["data"]["alertContext"]["AlertData"]["NotificationThresholdAmount"] = "$50.00"
    second = AzureReceiver().parse(req(payload), ctx()).alerts[0]
    assert first.group_key == second.group_key and first.source_event_id != second.source_event_id


def test_zero_budget_is_new_spend() -> None:
    payload = shared_json("fixtures/azure-budget/aip-budget-notification-tutorial.json")
    payload["data"]["Budget"] = "0"
    [alert] = AzureReceiver().parse(req(payload), ctx()).alerts
    assert alert.cost is not None and alert.cost.new_spend and alert.cost.increase_pct is None
    assert alert.dimensions == {}


def test_other_currency_kept() -> None:
    payload = shared_json("fixtures/azure-budget/common-schema-costalerts-actual.json")
    data = payload["data"]["alertContext"]["AlertData"]
    data.update(Unit="EUR", SpentAmount="1.234,50 €", BudgetThreshold="1.000,00 €", NotificationThresholdAmount="0.9")
    [alert] = AzureReceiver().parse(req(payload), ctx()).alerts
    assert alert.cost is not None and alert.cost.currency == "EUR"
    assert alert.cost.increase_pct == Decimal("23.45") and alert.cost.threshold == Decimal("900.000")


@pytest.mark.parametrize(("payload", "match"), [
    pytest.param({"schemaId": "azureMonitorCommonAlertSchema",
                  "data": {"essentials": {"monitoringService": "Platform", "alertRule": "cpu"},
                           "alertContext": {}}}, "CostAlerts", id="metric-alert"),
    pytest.param({"schemaId": "azureMonitorCommonAlertSchema",
                  "data": {"essentials": {"monitoringService": "CostAlerts"}, "alertContext": {}}},
                 "AlertData", id="costalerts-without-data"),
    pytest.param({"schemaId": "Microsoft.Insights/activityLogs", "data": {}}, "schemaId", id="other-schema"),
    pytest.param({"schemaId": "AIP Budget Notification"}, "data", id="no-data"),
    pytest.param({"schemaId": "AIP Budget Notification", "data": {"Budget": "lots"}}, "Budget",
                 id="amount-not-number"),
])
def test_bad_payloads(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(BadPayload, match=match):
        AzureReceiver().parse(req(payload), ctx())


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"\xff"], ids=["not-json", "list", "not-utf8"])
def test_not_json(body: bytes) -> None:
    with pytest.raises(BadPayload):
        AzureReceiver().parse(req(body), ctx())


@pytest.mark.parametrize(("text", "iso"), [
    ("11/17/2021 5:40:29 PM -08:00", "2021-11-17"),
    ("6/1/2018", "2018-06-01"),
    ("2022-11-01", "2022-11-01"),
    ("2022-11-01T00:00:00Z", "2022-11-01"),
    ("sometime", "sometime"),
    (None, None),
], ids=str)
def test_normalize_date(text: str | None, iso: str | None) -> None:
    assert normalize_date(text) == iso


def test_parse_azure_budget_is_pure() -> None:
    facts = parse_azure_budget(shared_json("fixtures/azure-budget/aip-budget-notification-tutorial.json"))
    assert facts.schema == "legacy" and facts.threshold_was_fraction
    assert facts.threshold == Decimal("40.0") and facts.increase_pct == Decimal("100.00")
