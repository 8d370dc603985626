"""Alertmanager webhook receiver: parsing (tables) and shared-token authentication."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.errors import AuthError, BadPayload
from bridge.model import AlertState, Link
from bridge.receivers.alertmanager import AlertmanagerReceiver, labels_hash, parse_number, split_categories
from bridge.receivers.base import Headers, InboundRequest, ReceiverContext
from tests.support.shared import shared_json

NOW = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
FIXTURE = "fixtures/alertmanager/webhook-v4-example.assembled.json"
TOKEN = "am-s3cret-token-value"


def ctx(**settings: Any) -> ReceiverContext:
    return ReceiverContext(now=NOW, settings=settings)


def request(body: Any, headers: dict[str, str] | None = None) -> InboundRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    return InboundRequest(body=raw, headers=Headers(headers or {}), path="/webhooks/alertmanager")


def parse(body: Any, **settings: Any):  # type: ignore[no-untyped-def]
    return AlertmanagerReceiver().parse(request(body), ctx(**settings))


def webhook(*alerts: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    """A version-4 body around `alerts` (the shape of the documented format)."""
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutErrors"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "incident-bridge",
        "groupLabels": {"alertname": "CheckoutErrors"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": list(alerts),
    }
    body.update(envelope)
    return body


def am_alert(status: str = "firing", labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": status,
        "labels": labels if labels is not None else {"alertname": "CheckoutErrors", "service": "checkout",
                                                     "severity": "page"},
        "annotations": annotations if annotations is not None else {},
        "startsAt": "2026-01-28T11:40:00Z",
        "endsAt": "2026-01-28T12:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=x",
        "fingerprint": "0123456789abcdef",
    }
    alert.update(extra)
    return alert


# ---------------------------------------------------------------------------------------------------------------
# The shared fixture, field by field


def test_documented_example_becomes_one_alert() -> None:
    parsed = parse(shared_json(FIXTURE))
    assert parsed.notices == []
    [alert] = parsed.alerts
    assert alert.source == "alertmanager"
    assert alert.state is AlertState.FIRING
    assert alert.title == "p99 request latency above 1s"
    assert alert.message == "p99 request latency above 1s"
    assert alert.group_key == "alertmanager:5f2b1c9a0e7d3b64"
    assert alert.source_event_id == "5f2b1c9a0e7d3b64:firing:2026-01-28T11:50:00Z"
    assert alert.received_at == NOW
    assert alert.service == "api"  # no `service` label: falls back to `job`
    assert alert.tags == (("alertname", "HighRequestLatency"), ("instance", "api-1:8080"), ("job", "api"),
                          ("severity", "critical"))
    assert alert.links == (
        Link("http://prometheus.example.com:9090/graph?g0.expr=histogram_quantile%280.99%2C+rate%28"
             "http_request_duration_seconds_bucket%5B5m%5D%29%29+%3E+1", "Prometheus"),
        Link("http://alertmanager.example.com:9093", "Alertmanager"),
    )
    assert alert.value is None and alert.dimensions == {} and alert.categories == frozenset()
    assert dict(alert.fields) == {
        "alertname": "HighRequestLatency",
        "severity": "critical",
        "status": "firing",
        "receiver": "incident-bridge",
        "group_key": '{}:{alertname="HighRequestLatency"}',
        "starts_at": "2026-01-28T11:50:00Z",
        "ends_at": "",  # Go's zero time means "not set"
        "fingerprint": "5f2b1c9a0e7d3b64",
        "notification_reason": "first notification",
        "label.alertname": "HighRequestLatency",
        "label.instance": "api-1:8080",
        "label.job": "api",
        "label.severity": "critical",
        "annotation.summary": "p99 request latency above 1s",
    }
    assert alert.raw["fingerprint"] == "5f2b1c9a0e7d3b64"


def test_unknown_keys_such_as_route_labels_are_ignored() -> None:
    body = shared_json(FIXTURE)
    body["routeLabels"] = {"team": "api"}
    body["alerts"][0]["somethingNew"] = {"x": 1}
    [alert] = parse(body).alerts
    assert alert.group_key == "alertmanager:5f2b1c9a0e7d3b64"


# ---------------------------------------------------------------------------------------------------------------
# Table: one alert in, selected attributes out

CASES = [
    pytest.param(
        webhook(am_alert("resolved", annotations={"summary": "Checkout errors", "description": "5xx on /pay"}),
                status="resolved"),
        {},
        {"state": AlertState.RESOLVED, "title": "Checkout errors", "message": "Checkout errors\n\n5xx on /pay",
         "source_event_id": "0123456789abcdef:resolved:2026-01-28T11:40:00Z:2026-01-28T12:10:00Z",
         "group_key": "alertmanager:0123456789abcdef", "service": "checkout"},
        id="resolved-alert-has-endsAt-in-event-id",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "CheckoutErrors", "job": "checkout", "instance": "c-1:8080"})),
        {},
        {"title": "CheckoutErrors (job=checkout, instance=c-1:8080)", "message": "", "service": "checkout"},
        id="title-from-alertname-and-key-labels",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "CheckoutErrors", "dimension": "users_affected_pct",
                                 "category": "deployment, Infrastructure"},
                         annotations={"summary": "Checkout failing", "value": "12.5"})),
        {},
        {"value": 12.5, "dimensions": {"users_affected_pct": 12.5},
         "categories": frozenset({"deployment", "infrastructure"})},
        id="dimension-label-value-annotation-categories",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "X", "dimension": "customers_affected_pct", "value": "7"})),
        {},
        {"value": 7.0, "dimensions": {"customers_affected_pct": 7.0}},
        id="value-from-label-when-no-annotation",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "X", "dimension": "users_affected_pct"},
                         annotations={"value": "about 12"})),
        {},
        {"value": None, "dimensions": {}},
        id="unparseable-value-gives-no-dimension",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "X", "impact": "users_affected_pct", "pct": "3",
                                 "kind": "security"},
                         annotations={"observed": "21.5%", "value": "999"})),
        {"dimension_label": "impact", "value_annotation": "observed", "value_label": "pct",
         "category_label": "kind"},
        {"value": 21.5, "dimensions": {"users_affected_pct": 21.5}, "categories": frozenset({"security"})},
        id="custom-label-names-from-settings",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "X", "impact": "users_affected_pct", "pct": "3"})),
        {"dimension_label": "impact", "value_annotation": "observed", "value_label": "pct"},
        {"value": 3.0, "dimensions": {"users_affected_pct": 3.0}},
        id="custom-value-label-fallback",
    ),
    pytest.param(
        webhook({k: v for k, v in am_alert().items() if k != "fingerprint"}),
        {},
        {"group_key": "alertmanager:labels-" + labels_hash({"alertname": "CheckoutErrors", "service": "checkout",
                                                             "severity": "page"}),
         "source_event_id": "labels-" + labels_hash({"alertname": "CheckoutErrors", "service": "checkout",
                                                      "severity": "page"}) + ":firing:2026-01-28T11:40:00Z"},
        id="missing-fingerprint-hashes-labels",
    ),
    pytest.param(
        webhook({k: v for k, v in am_alert().items() if k != "status"}, status="resolved"),
        {},
        {"state": AlertState.RESOLVED},
        id="alert-without-status-takes-the-group-status",
    ),
    pytest.param(
        webhook(am_alert(labels={"alertname": "X"}, annotations={"runbook_url": "https://runbooks/x"}),
                externalURL=""),
        {},
        {"links": (Link("http://prometheus.example.com:9090/graph?g0.expr=x", "Prometheus"),
                   Link("https://runbooks/x", "Runbook"))},
        id="runbook-link-and-no-empty-alertmanager-link",
    ),
]


@pytest.mark.parametrize(("body", "settings", "expected"), CASES)
def test_parse_table(body: dict[str, Any], settings: dict[str, str], expected: dict[str, Any]) -> None:
    [alert] = parse(body, **settings).alerts
    got = {key: getattr(alert, key) for key in expected}
    if "dimensions" in got:
        got["dimensions"] = dict(got["dimensions"])
    assert got == expected


def test_labels_and_annotations_are_fields_and_tags() -> None:
    [alert] = parse(webhook(am_alert(labels={"alertname": "X", "team": "pay"},
                                     annotations={"summary": "s", "dashboard": "https://d"}))).alerts
    assert alert.fields["label.team"] == "pay"
    assert alert.fields["annotation.dashboard"] == "https://d"
    assert ("team", "pay") in alert.tags


def test_repeat_notification_has_same_event_id_new_cycle_does_not() -> None:
    first = parse(webhook(am_alert())).alerts[0]
    repeat = parse(webhook(am_alert(), notification_reason="repeat interval elapsed")).alerts[0]
    new_cycle = parse(webhook(am_alert(startsAt="2026-01-28T15:00:00Z"))).alerts[0]
    resolved = parse(webhook(am_alert("resolved"))).alerts[0]
    assert first.source_event_id == repeat.source_event_id
    assert new_cycle.source_event_id != first.source_event_id
    assert resolved.source_event_id != first.source_event_id
    # One alert, one incident: the group key holds across the whole cycle and never contains a time.
    assert {first.group_key, repeat.group_key, new_cycle.group_key, resolved.group_key} == {
        "alertmanager:0123456789abcdef"}


def test_a_moved_value_is_a_new_event_of_the_same_incident() -> None:
    labels = {"alertname": "CheckoutErrors", "dimension": "users_affected_pct"}
    low = parse(webhook(am_alert(labels=labels, annotations={"value": "6"}))).alerts[0]
    again = parse(webhook(am_alert(labels=labels, annotations={"value": "6.0"}))).alerts[0]
    high = parse(webhook(am_alert(labels=labels, annotations={"value": "25"}))).alerts[0]
    assert low.source_event_id == again.source_event_id == "0123456789abcdef:firing:2026-01-28T11:40:00Z:value=6.0"
    assert high.source_event_id == "0123456789abcdef:firing:2026-01-28T11:40:00Z:value=25.0"
    assert low.group_key == high.group_key


def test_firing_endsAt_does_not_change_event_id() -> None:
    # Prometheus pushes endsAt forward on every evaluation of a firing alert.
    a = parse(webhook(am_alert(endsAt="2026-01-28T11:44:00Z"))).alerts[0]
    b = parse(webhook(am_alert(endsAt="2026-01-28T11:48:00Z"))).alerts[0]
    assert a.source_event_id == b.source_event_id


def test_batch_gives_one_alert_per_entry_with_own_state() -> None:
    body = webhook(am_alert(), am_alert("resolved", labels={"alertname": "CheckoutErrors", "service": "cart"},
                                        fingerprint="fedcba9876543210"))
    alerts = parse(body).alerts
    assert [(a.state, a.group_key, a.service) for a in alerts] == [
        (AlertState.FIRING, "alertmanager:0123456789abcdef", "checkout"),
        (AlertState.RESOLVED, "alertmanager:fedcba9876543210", "cart"),
    ]


def test_truncated_alerts_are_noted_in_fields_and_a_notice() -> None:
    parsed = parse(webhook(am_alert(), truncatedAlerts=3))
    assert parsed.alerts[0].fields["truncated_alerts"] == "3"
    [notice] = parsed.notices
    assert notice.kind == "alerts_truncated" and notice.level == "warning"
    assert "truncated 3 alert(s)" in notice.message and "max_alerts" in notice.message


def test_unknown_version_with_v4_shape_is_accepted_with_a_notice() -> None:
    parsed = parse(webhook(am_alert(), version="5"))
    assert len(parsed.alerts) == 1
    assert parsed.alerts[0].fields["webhook_version"] == "5"
    assert [n.kind for n in parsed.notices] == ["unknown_version"]


def test_one_bad_entry_is_skipped_the_rest_is_kept() -> None:
    parsed = parse(webhook(am_alert(), "not an alert", am_alert(status="pending")))
    assert len(parsed.alerts) == 1
    assert [n.message for n in parsed.notices] == [
        "skipped alerts[1] of the Alertmanager webhook: expected an object, got a string",
        "skipped alerts[2] of the Alertmanager webhook: status 'pending' is neither 'firing' nor 'resolved'",
    ]


BAD = [
    pytest.param(b"{not json", "the body is not valid JSON: Expecting property name enclosed in double quotes "
                               "at line 1, column 2 (character 1)", id="not-json"),
    pytest.param(b"[1, 2]", "the body must be a JSON object (the Alertmanager webhook), got an array",
                 id="not-an-object"),
    pytest.param({"version": "4", "status": "firing"},
                 "not an Alertmanager webhook: the body has no 'alerts' list (expected the webhook_config body, "
                 "version 4)", id="no-alerts"),
    pytest.param({"version": "4", "alerts": {"a": 1}},
                 "not an Alertmanager webhook: the body has no 'alerts' list (expected the webhook_config body, "
                 "version 4)", id="alerts-not-a-list"),
    pytest.param(webhook(), "the Alertmanager webhook carries an empty 'alerts' list: nothing to process",
                 id="empty-alerts"),
    pytest.param(webhook(am_alert(labels={})), "no usable alert in the Alertmanager webhook: alerts[0]: the "
                                               "alert has no labels", id="no-labels"),
    pytest.param(webhook(am_alert(labels=["a"])),  # type: ignore[arg-type]
                 "no usable alert in the Alertmanager webhook: alerts[0]: 'labels' must be an object of strings, "
                 "got an array", id="labels-not-object"),
    pytest.param({"version": "9", "alerts": [{"foo": "bar"}]},
                 "no usable alert in the Alertmanager webhook: alerts[0]: the alert has no labels",
                 id="unknown-version-wrong-shape"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_payloads(body: Any, message: str) -> None:
    with pytest.raises(BadPayload) as info:
        parse(body)
    assert info.value.message == message
    assert info.value.status == 400


@pytest.mark.parametrize(("raw", "expected"), [
    ("12.5", 12.5), (" 7 ", 7.0), ("21.5%", 21.5), ("1.2e+01", 12.0), ("1,234.5", 1234.5), (3, 3.0),
    ("NaN", None), ("+Inf", None), (float("inf"), None), (True, None), ("1.2k", None), ("", None), (None, None),
    ([1], None),
])
def test_parse_number(raw: Any, expected: float | None) -> None:
    assert parse_number(raw) == expected


def test_split_categories() -> None:
    assert split_categories("Security, deployment,,") == frozenset({"security", "deployment"})
    assert split_categories(["a,b", "C", None]) == frozenset({"a", "b", "c"})
    assert split_categories(None) == frozenset()


# ---------------------------------------------------------------------------------------------------------------
# Authentication


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("headers", [
    pytest.param({"Authorization": f"Bearer {TOKEN}"}, id="bearer"),
    pytest.param({"authorization": basic("alertmanager", TOKEN)}, id="basic-password"),
])
def test_right_token_is_accepted(headers: dict[str, str]) -> None:
    AlertmanagerReceiver().authenticate(request(b"{}", headers), ctx(token=TOKEN))


@pytest.mark.parametrize(("headers", "message"), [
    pytest.param({}, "missing credentials: send the webhook token as 'Authorization: Bearer <token>' "
                     "(http_config.authorization) or as the basic-auth password (http_config.basic_auth)",
                 id="none"),
    pytest.param({"Authorization": "Bearer wrong-token-xyz"}, "wrong webhook token", id="wrong-bearer"),
    pytest.param({"Authorization": basic(TOKEN, "wrong-token-xyz")}, "wrong webhook token",
                 id="token-as-user-not-password"),
    pytest.param({"Authorization": "Token " + TOKEN}, "missing credentials: send the webhook token as "
                  "'Authorization: Bearer <token>' (http_config.authorization) or as the basic-auth password "
                  "(http_config.basic_auth)", id="unknown-scheme"),
])
def test_wrong_or_missing_token_is_401_and_never_echoed(headers: dict[str, str], message: str) -> None:
    with pytest.raises(AuthError) as info:
        AlertmanagerReceiver().authenticate(request(b"{}", headers), ctx(token=TOKEN))
    assert info.value.status == 401
    assert info.value.message == message
    text = json.dumps(info.value.to_json()) + str(info.value)
    assert TOKEN not in text and "wrong-token-xyz" not in text


def test_no_token_configured_means_no_check_here() -> None:
    AlertmanagerReceiver().authenticate(request(b"{}"), ctx())

