"""Datadog receiver: tables of parsing edge cases, auth, bad input, the captured Keep payloads and our examples."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import AuthError, BadPayload
from bridge.model import AlertState, Link
from bridge.receivers.base import Headers, InboundRequest, ReceiverContext
from bridge.receivers.datadog import DatadogReceiver, extract_bridge_value, is_recovery, normalize_transition
from tests.support.shared import REPO, shared_path

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
CTX = ReceiverContext(now=NOW)
RECEIVER = DatadogReceiver()
TEMPLATE = REPO / "webhooks" / "datadog" / "payload.json"
EXAMPLES = REPO / "webhooks" / "datadog" / "examples"
TOKEN = "s3cr3t-Bridge-T0ken"


def request(payload: Any = None, *, body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> InboundRequest:
    """A request carrying `payload` as JSON (or the raw `body`)."""
    if body is None:
        body = json.dumps(payload).encode("utf-8")
    return InboundRequest(body=body, headers=Headers(headers or {"Content-Type": "application/json"}))


def parse_one(payload: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
    parsed = RECEIVER.parse(request(payload, **kw), CTX)
    assert len(parsed.alerts) == 1
    return parsed.alerts[0]


def ours(**changes: str) -> dict[str, Any]:
    """A payload in our template's shape, all variables filled as strings (what Datadog sends)."""
    base: dict[str, Any] = {
        "id": "7905412263218861043", "alert_id": "183664512", "alert_cycle_key": "", "aggreg_key": "",
        "transition": "Triggered", "alert_type": "error", "priority": "P1",
        "title": "[P1] [Triggered] Checkout: users cannot pay", "alert_title": "", "text": "bridge.value: 27.4",
        "status": "", "query": "avg(last_5m):avg:x{*} by {service} > 20", "metric": "checkout.failed_pct",
        "scope": "service:checkout", "tags": "monitor,service:checkout", "hostname": "", "event_type":
        "query_alert_monitor", "date": "1767350520000", "last_updated": "1767350520000",
        "link": "https://app.datadoghq.com/event/event?id=7905412263218861043", "snapshot": "",
        "org": {"id": "1200345", "name": "Example Shop"},
    }
    base.update(changes)
    return base


# --- pure helpers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("Triggered", "Triggered"),
    ("Re-Triggered", "Re-Triggered"),
    ("re_triggered", "Re-Triggered"),
    ("Warn", "Warn"),
    ("warning", "Warn"),
    ("Re-Warn", "Re-Warn"),
    ("No Data", "No Data"),
    ("NODATA", "No Data"),
    ("no_data", "No Data"),
    ("Re-No Data", "Re-No Data"),
    ("Recovered", "Recovered"),
    (" recovered ", "Recovered"),
    ("Renotify", "Renotify"),
    ("Null", "Null"),
    ("Muted", "Muted"),
    ("", ""),
], ids=lambda v: repr(v))
def test_normalize_transition(raw: str, expected: str) -> None:
    assert normalize_transition(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("Recovered", True),
    ("Recovered from Warn", True),
    ("recovery", True),
    ("Triggered", False),
    ("Re-Triggered", False),
    ("Warn", False),
    ("", False),
], ids=lambda v: repr(v))
def test_is_recovery(raw: str, expected: bool) -> None:
    assert is_recovery(raw) is expected


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("bridge.value: 23.5", 23.5, id="plain"),
    pytest.param("Users affected.\nbridge.value: 12\nRunbook: x", 12.0, id="among-lines"),
    pytest.param("bridge.value:23.5%", 23.5, id="no-space-percent"),
    pytest.param("bridge.value:   23.5 %", 23.5, id="spaces-percent"),
    pytest.param("**bridge.value:** 23.5", 23.5, id="markdown-bold-key"),
    pytest.param("bridge.value: **23.5**", 23.5, id="markdown-bold-value"),
    pytest.param("`bridge.value: 7`", 7.0, id="markdown-code"),
    pytest.param("bridge.value: 1,234.5", 1234.5, id="thousands"),
    pytest.param("bridge.value: 1,234,567", 1234567.0, id="thousands-twice"),
    pytest.param("bridge.value: -3.25", -3.25, id="negative"),
    pytest.param("bridge.value: .5", 0.5, id="leading-dot"),
    pytest.param("bridge.value: 1e3", 1000.0, id="exponent"),
    pytest.param("BRIDGE.VALUE = 42", 42.0, id="case-and-equals"),
    pytest.param("bridge.value: 60.0.", 60.0, id="sentence-period"),
    pytest.param("bridge.value: 23.5 of users", 23.5, id="trailing-words"),
    pytest.param("bridge.value: \nbridge.value: 9", 9.0, id="empty-then-number"),
    pytest.param("bridge.value: 12,5", None, id="decimal-comma-refused"),
    pytest.param("bridge.value: {{value}}", None, id="unrendered"),
    pytest.param("bridge.value: ", None, id="empty"),
    pytest.param("bridge.value: nan", None, id="nan"),
    pytest.param("bridge.value: 1e999", None, id="infinite"),
    pytest.param("bridge.value: 23abc", None, id="glued-letters"),
    pytest.param("mybridge.value: 5", None, id="other-key"),
    pytest.param("value: 5", None, id="absent"),
    pytest.param("", None, id="empty-text"),
])
def test_extract_bridge_value(text: str, expected: float | None) -> None:
    assert extract_bridge_value(text) == expected


# --- tags, service, dimensions, categories -----------------------------------------------------------------------


@pytest.mark.parametrize(("tags", "scope", "expected"), [
    pytest.param("monitor,service:api", "", (("service", "api"),), id="drops-bare-monitor"),
    pytest.param("monitor, name:myService, role:computing-node", "",
                 (("name", "myService"), ("role", "computing-node")), id="docs-format-with-spaces"),
    pytest.param("database_id:keephq-sandbox:keep,monitor", "", (("database_id", "keephq-sandbox:keep"),),
                 id="value-with-colon"),
    pytest.param("security-group:a,security-group:b", "", (("security-group", "a"), ("security-group", "b")),
                 id="repeated-key"),
    pytest.param("env:prod", "service:api, env:prod", (("env", "prod"), ("service", "api")),
                 id="scope-added-deduped"),
    pytest.param("", "availability-zone:us-east-1a, role:computing-node",
                 (("availability-zone", "us-east-1a"), ("role", "computing-node")), id="scope-only"),
    pytest.param("monitor:keep,,  ,", "", (("monitor", "keep"),), id="monitor-with-value-kept-empties-dropped"),
    pytest.param("", "*", (), id="wildcard-scope-not-a-tag"),
    pytest.param(["env:prod", "service:api"], "", (("env", "prod"), ("service", "api")), id="list-of-tags"),
])
def test_tags(tags: Any, scope: str, expected: tuple[tuple[str, str], ...]) -> None:
    alert = parse_one(ours(tags=tags, scope=scope))
    assert alert.tags == expected


@pytest.mark.parametrize(("tags", "text", "dimensions", "categories", "service"), [
    pytest.param("dimension:users_affected_pct,service:checkout", "bridge.value: 27.4",
                 {"users_affected_pct": 27.4}, set(), "checkout", id="dimension-with-value"),
    pytest.param("dimension:users_affected_pct", "no value line", {}, set(), None, id="dimension-without-value"),
    pytest.param("service:a", "bridge.value: 5", {}, set(), "a", id="value-without-dimension"),
    pytest.param("category:security,category:Breach,service:a,service:b", "", {}, {"security", "breach"}, "a",
                 id="repeated-categories-first-service"),
    pytest.param("category:cloud_cost,dimension:cloud_cost_increase_pct", "bridge.value: 60",
                 {"cloud_cost_increase_pct": 60.0}, {"cloud_cost"}, None, id="cost"),
])
def test_dimensions_categories_service(tags: str, text: str, dimensions: dict[str, float], categories: set[str],
                                       service: str | None) -> None:
    alert = parse_one(ours(tags=tags, text=text, scope=""))
    assert dict(alert.dimensions) == dimensions
    assert alert.categories == frozenset(categories)
    assert alert.service == service


def test_value_falls_back_to_markdown_body() -> None:
    payload = ours(text="")
    payload["body"] = "%%%\n**bridge.value:** 1,250 %\n%%%"
    alert = parse_one(payload)
    assert alert.value == 1250.0
    assert alert.message == "**bridge.value:** 1,250 %"


# --- state, fields, group keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("transition", "state", "renotify"), [
    ("Triggered", AlertState.FIRING, "false"),
    ("Re-Triggered", AlertState.FIRING, "true"),
    ("Warn", AlertState.FIRING, "false"),
    ("Re-Warn", AlertState.FIRING, "true"),
    ("No Data", AlertState.FIRING, "false"),
    ("Re-No Data", AlertState.FIRING, "true"),
    ("Renotify", AlertState.FIRING, "true"),
    ("Recovered", AlertState.RESOLVED, "false"),
    ("Recovered from No Data", AlertState.RESOLVED, "false"),
    ("Null", AlertState.FIRING, "false"),
    ("", AlertState.FIRING, "false"),
], ids=lambda v: repr(v) if isinstance(v, str) else None)
def test_state_mapping(transition: str, state: AlertState, renotify: str) -> None:
    alert = parse_one(ours(transition=transition, title="Checkout down"))
    assert alert.state is state
    assert alert.fields["renotify"] == renotify


@pytest.mark.parametrize(("payload", "transition", "state"), [
    pytest.param({"title": "[Recovered on {service:x}] Error monitor", "id": "1"}, "Recovered",
                 AlertState.RESOLVED, id="from-title-recovered"),
    pytest.param({"title": "[P2] [Warn] Unauthorized access", "id": "1"}, "Warn", AlertState.FIRING,
                 id="from-title-priority-form"),
    pytest.param({"title": "Host down", "alert_type": "success", "id": "1"}, "Recovered", AlertState.RESOLVED,
                 id="success-without-transition"),
])
def test_transition_when_template_lacks_it(payload: dict[str, str], transition: str, state: AlertState) -> None:
    alert = parse_one(payload)
    assert alert.fields["transition"] == transition
    assert alert.state is state


def test_fields_of_our_template() -> None:
    alert = parse_one(ours(alert_cycle_key="ck1", aggreg_key="ag1", status="x was > 20", hostname="web-1",
                           priority="p2"))
    assert alert.fields == {
        "transition": "Triggered", "alert_type": "error", "priority": "P2", "monitor_id": "183664512",
        "event_type": "query_alert_monitor", "scope": "service:checkout",
        "query": "avg(last_5m):avg:x{*} by {service} > 20", "aggreg_key": "ag1", "cycle_key": "ck1",
        "org_id": "1200345", "hostname": "web-1", "status": "x was > 20", "event_date": "2026-01-02T10:42:00+00:00",
        "renotify": "false",
    }
    assert alert.source == "datadog"
    assert alert.source_event_id == "7905412263218861043"
    assert alert.received_at == NOW
    assert alert.metric == "checkout.failed_pct"
    assert alert.raw["alert_cycle_key"] == "ck1"


@pytest.mark.parametrize(("priority", "title", "expected"), [
    ("P1", "x", "P1"),
    ("", "[P3] [Warn] x", "P3"),
    ("normal", "[P4] [Triggered] x", "P4"),  # event priority ($PRIORITY) is not the monitor priority
    ("P9", "x", ""),
    ("", "x", ""),
], ids=lambda v: repr(v))
def test_priority(priority: str, title: str, expected: str) -> None:
    assert parse_one(ours(priority=priority, title=title)).fields["priority"] == expected


@pytest.mark.parametrize(("date", "expected"), [
    ("1733930378000", "2024-12-11T15:19:38+00:00"),
    ("1733930378123", "2024-12-11T15:19:38.123+00:00"),
    ("1733930378", "2024-12-11T15:19:38+00:00"),
    ("2024-12-11T15:19:38Z", "2024-12-11T15:19:38+00:00"),
    ("yesterday", ""),
    ("1e400", ""),
    ("", ""),
], ids=lambda v: repr(v))
def test_event_date(date: str, expected: str) -> None:
    assert parse_one(ours(date=date, last_updated="")).fields["event_date"] == expected


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({"alert_cycle_key": "abc123"}, "datadog:cycle:abc123", id="cycle-key-wins"),
    pytest.param({"scope": "service:checkout, env:prod"}, "datadog:183664512:env:prod,service:checkout",
                 id="monitor-and-sorted-scope"),
    pytest.param({"scope": "env:prod,service:checkout"}, "datadog:183664512:env:prod,service:checkout",
                 id="scope-order-does-not-matter"),
    pytest.param({"scope": ""}, "datadog:183664512:", id="monitor-without-scope"),
    pytest.param({"alert_id": "", "aggreg_key": "9bd4ac31"}, "datadog:aggreg:9bd4ac31", id="aggreg-key"),
    pytest.param({"alert_id": "", "scope": "", "title": "[P2] [Warn] Unauthorized access"},
                 "datadog:title:Unauthorized access", id="title-without-priority-and-transition"),
    pytest.param({"alert_id": "", "scope": "", "title": "[Triggered on {service:x,env:a}] Error monitor"},
                 "datadog:title:Error monitor:env:a,service:x", id="title-group-from-braces"),
    pytest.param({"alert_id": "", "scope": "", "title": "[prod] DB down"}, "datadog:title:[prod] DB down",
                 id="title-bracket-that-is-no-transition"),
    pytest.param({"alert_id": "", "scope": "", "title": "", "alert_title": ""},
                 "datadog:event:7905412263218861043", id="last-resort-event-id"),
])
def test_group_key(changes: dict[str, str], expected: str) -> None:
    assert parse_one(ours(**changes)).group_key == expected


def test_group_key_is_the_same_for_trigger_and_recovery_and_has_no_timestamp() -> None:
    trigger = parse_one(ours(id="1", date="1767350520000", title="[P1] [Triggered] X"))
    recovery = parse_one(ours(id="2", date="1767352860000", transition="Recovered", alert_type="success",
                              title="[P1] [Recovered] X", scope="service:checkout"))
    assert trigger.group_key == recovery.group_key
    assert "1767350520" not in trigger.group_key and "2026" not in trigger.group_key


def test_weak_group_key_produces_a_notice() -> None:
    parsed = RECEIVER.parse(request({"title": "[Triggered on {host:a}] Host down", "id": "5"}), CTX)
    assert [n.kind for n in parsed.notices] == ["weak_group_key"]
    assert not RECEIVER.parse(request(ours()), CTX).notices


def test_source_event_id_without_id_is_a_stable_body_hash() -> None:
    body = json.dumps(ours(id="")).encode()
    first = parse_one(body=body).source_event_id
    assert first == parse_one(body=body).source_event_id
    assert first.startswith("sha256:") and first != parse_one(body=body + b" ").source_event_id


@pytest.mark.parametrize(("link", "site", "monitor_href"), [
    pytest.param("https://app.datadoghq.com/event/event?id=1", None, "https://app.datadoghq.com/monitors/183664512",
                 id="us1"),
    pytest.param("https://app.datadoghq.eu/event/event?id=1", None, "https://app.datadoghq.eu/monitors/183664512",
                 id="eu"),
    pytest.param("https://us5.datadoghq.com/event/event?id=1", None,
                 "https://us5.datadoghq.com/monitors/183664512", id="us5"),
    pytest.param("https://acme.datadoghq.com/event/event?id=1", None,
                 "https://acme.datadoghq.com/monitors/183664512", id="custom-subdomain"),
    pytest.param("https://evil.example.com/datadoghq.com", None, "https://app.datadoghq.com/monitors/183664512",
                 id="foreign-host-ignored"),
    pytest.param("", "datadoghq.eu", "https://app.datadoghq.eu/monitors/183664512", id="site-setting"),
    pytest.param("", "us3.datadoghq.com", "https://us3.datadoghq.com/monitors/183664512", id="site-setting-us3"),
    pytest.param("", None, "https://app.datadoghq.com/monitors/183664512", id="default"),
])
def test_monitor_link(link: str, site: str | None, monitor_href: str) -> None:
    ctx = ReceiverContext(now=NOW, settings={"site": site} if site else {})
    alert = RECEIVER.parse(request(ours(link=link, snapshot="https://p.datadoghq.com/s.png")), ctx).alerts[0]
    expected = ([Link(link, "Datadog event")] if link else []) + [
        Link(monitor_href, "Datadog monitor"), Link("https://p.datadoghq.com/s.png", "Graph snapshot")]
    assert list(alert.links) == expected


def test_non_http_links_are_dropped() -> None:
    alert = parse_one(ours(link="javascript:alert(1)", snapshot="file:///etc/passwd", alert_id="abc"))
    assert alert.links == ()


@pytest.mark.parametrize(("security", "is_security"), [
    pytest.param({"rule_name": "Brute force", "signal_id": "AQAA", "signal_severity": "high",
                  "signal_title": "Brute force on login", "rule_type": "log_detection"}, True, id="filled"),
    pytest.param({"rule_name": "", "signal_attributes": "{}", "rule_matched_queries": "[]",
                  "rule_group_by_fields": "null"}, False, id="empty-json-containers-are-not-security"),
    pytest.param({"signal_attributes": "{\"ip\": \"203.0.113.7\"}"}, True, id="attributes-only"),
    pytest.param({"rule_name": "$SECURITY_RULE_NAME"}, False, id="unsubstituted"),
])
def test_security_signals(security: dict[str, str], is_security: bool) -> None:
    alert = parse_one(ours(security=security))  # type: ignore[arg-type]
    assert ("security" in alert.categories) is is_security
    if is_security and "rule_name" in security:
        assert alert.fields["security_rule_name"] == "Brute force"
        assert alert.fields["security_signal_severity"] == "high"
        assert alert.fields["security_rule_type"] == "log_detection"
    if not is_security:
        assert not any(k.startswith("security_") for k in alert.fields)


def test_security_signal_flat_keys_and_title_fallback() -> None:
    alert = parse_one({"id": "9", "security_signal_title": "Impossible travel", "security_signal_id": "AQ1",
                       "security_signal_msg": "User logged in from two continents"})
    assert alert.title == "Impossible travel"
    assert alert.message == "User logged in from two continents"
    assert alert.group_key == "datadog:signal:AQ1"
    assert "security" in alert.categories


def test_message_prefers_text_and_strips_markdown_wrapper() -> None:
    assert parse_one(ours(text="plain text", body="%%%\nmarkdown\n%%%")).message == "plain text"
    assert parse_one(ours(text="") | {"body": "%%%\n**markdown**\n%%%"}).message == "**markdown**"


def test_title_fallback() -> None:
    alert = parse_one({"alert_id": "42", "scope": "host:a", "transition": "No Data"})
    assert alert.title == "Datadog monitor 42 on host:a: No Data"


# --- auth --------------------------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("headers", "ok"), [
    pytest.param({"Authorization": f"Bearer {TOKEN}"}, True, id="bearer"),
    pytest.param({"authorization": f"bearer {TOKEN}"}, True, id="bearer-lowercase"),
    pytest.param({"Authorization": basic("datadog", TOKEN)}, True, id="basic-password"),
    pytest.param({"Authorization": "Bearer wrong-token-value"}, False, id="bearer-wrong"),
    pytest.param({"Authorization": basic(TOKEN, "wrong-password")}, False, id="basic-token-as-user-is-wrong"),
    pytest.param({"Authorization": "Bearer $BRIDGE_TOKEN"}, False, id="unsubstituted-variable"),
    pytest.param({"Authorization": "Token " + TOKEN}, False, id="unknown-scheme"),
    pytest.param({}, False, id="missing"),
])
def test_authenticate_with_token(headers: dict[str, str], ok: bool) -> None:
    req = InboundRequest(body=b"{}", headers=Headers(headers))
    ctx = ReceiverContext(now=NOW, settings={"token": TOKEN})
    if ok:
        RECEIVER.authenticate(req, ctx)
        return
    with pytest.raises(AuthError) as info:
        RECEIVER.authenticate(req, ctx)
    text = f"{info.value} {info.value.to_json()}"
    assert TOKEN not in text
    assert "wrong-token-value" not in text and "wrong-password" not in text
    assert info.value.status == 401
    assert "Authorization" in info.value.message or "token" in info.value.message


def test_authenticate_without_configured_token_accepts_anything() -> None:
    RECEIVER.authenticate(InboundRequest(body=b"{}"), CTX)
    RECEIVER.authenticate(InboundRequest(body=b"{}", headers=Headers({"Authorization": "Bearer x"})), CTX)


# --- body formats and bad input -------------------------------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("body", [
    pytest.param(urllib.parse.urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in ours().items()}),
                 id="one-field-per-key-nested-as-json"),
    pytest.param(urllib.parse.urlencode({**{k: v for k, v in ours().items() if k != "org"},
                                         "org[id]": "1200345", "org[name]": "Example Shop"}),
                 id="bracket-nested-keys"),
    pytest.param(urllib.parse.urlencode({"payload": json.dumps(ours())}), id="whole-json-in-one-field"),
    pytest.param(urllib.parse.quote(json.dumps(ours())), id="whole-json-percent-encoded"),
])
def test_form_encoded_body(body: str) -> None:
    alert = parse_one(body=body.encode(), headers=FORM)
    assert alert.source_event_id == "7905412263218861043"
    assert alert.group_key == "datadog:183664512:service:checkout"
    assert alert.value == 27.4
    assert alert.fields["org_id"] == "1200345"


def test_json_body_with_form_header_is_still_json() -> None:
    assert parse_one(ours(), headers=FORM).source_event_id == "7905412263218861043"


def test_json_body_with_bom_and_no_content_type() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(ours()).encode()
    assert parse_one(body=body, headers={}).service == "checkout"


@pytest.mark.parametrize(("body", "headers", "needle"), [
    pytest.param(b'{"id": "1", "title": }', None, "line 1, column 22", id="invalid-json-position"),
    pytest.param(b'{"id": "1",\n "attrs": ,}', None, "line 2", id="unquoted-empty-variable"),
    pytest.param(b"[1, 2]", None, "got a JSON array", id="array"),
    pytest.param(b'"just a string"', None, "got a JSON string", id="string"),
    pytest.param(b"42", None, "got a JSON number", id="number"),
    pytest.param(b"null", None, "got a JSON null", id="null"),
    pytest.param(b"{}", None, "expected at least one of id", id="empty-object"),
    pytest.param(b'{"foo": "bar", "n": 1}', None, "keys found: foo, n", id="unknown-keys"),
    pytest.param(b'{"id": "", "title": null, "transition": "  "}', None, "expected at least one of",
                 id="keys-without-values"),
    pytest.param(b"", None, "empty body", id="empty-body"),
    pytest.param(b"\xff\xfe{", None, "not UTF-8", id="not-utf8"),
    pytest.param(b"=&=", FORM, "expected at least one of", id="empty-form"),
    pytest.param(b"[" * 100000 + b"]" * 100000, None, "nested deeper than 64 levels", id="deep-nesting"),
])
def test_bad_payload(body: bytes, headers: dict[str, str] | None, needle: str) -> None:
    with pytest.raises(BadPayload) as info:
        RECEIVER.parse(request(body=body, headers=headers), CTX)
    assert needle in info.value.message
    assert info.value.status == 400


def test_raw_template_without_substitution_is_rejected() -> None:
    with pytest.raises(BadPayload, match="expected at least one of"):
        RECEIVER.parse(request(body=TEMPLATE.read_bytes()), CTX)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_KEYS = st.sampled_from(["id", "alert_id", "monitor_id", "alert_cycle_key", "aggreg_key", "transition",
                         "alert_transition", "alert_type", "priority", "severity", "title", "alert_title", "text",
                         "body", "status", "query", "metric", "scope", "scopes", "tags", "hostname", "event_type",
                         "date", "last_updated", "link", "url", "snapshot", "org", "security", "org_id",
                         "security_signal_id"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS | st.text(max_size=6), _JSON | st.text(max_size=60), max_size=10))
def test_any_json_object_gives_one_alert_or_bad_payload(payload: dict[str, Any]) -> None:
    try:
        parsed = RECEIVER.parse(request(payload), CTX)
    except BadPayload:
        return
    alert = parsed.alerts[0]
    assert alert.group_key and alert.source_event_id and alert.title
    assert all(isinstance(v, str) for v in alert.fields.values())
    json.dumps(alert.to_dict())  # serializable for the store


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       st.sampled_from([None, FORM, {"Content-Type": "text/plain"}, {}]))
def test_any_body_gives_one_alert_or_bad_payload(body: bytes, headers: dict[str, str] | None) -> None:
    try:
        parsed = RECEIVER.parse(request(body=body, headers=headers), CTX)
    except BadPayload as exc:
        assert exc.message
        return
    assert len(parsed.alerts) == 1


# --- the captured Keep payloads --------------------------------------------------------------------------------------


def keep_alerts() -> list[tuple[dict[str, Any], Any]]:
    path = shared_path("fixtures/datadog/keep-raw-alerts.jsonl")
    out = []
    for line in path.read_bytes().splitlines():
        if not line.startswith(b"{"):  # line 44 is the literal "sqlite>" of the shell it was exported from
            continue
        out.append((json.loads(line), RECEIVER.parse(InboundRequest(body=line), CTX).alerts[0]))
    return out


def test_every_captured_keep_payload_parses() -> None:
    pairs = keep_alerts()
    assert len(pairs) == 43
    for raw, alert in pairs:
        assert alert.source_event_id == raw["id"]
        assert alert.state is (AlertState.RESOLVED if raw["alert_transition"] == "Recovered" else AlertState.FIRING)
        assert alert.fields["transition"] == raw["alert_transition"]
        assert alert.fields["monitor_id"] == raw["monitor_id"]
        assert alert.fields["event_type"] == "log_alert"
        assert alert.group_key == f"datadog:{raw['monitor_id']}:{raw['scopes']}"
        assert alert.title == raw["title"].strip()  # one captured title ends with a space
        assert not alert.message.startswith("%%%") and not alert.message.endswith("%%%")
        assert ("monitor", "") not in alert.tags
        assert alert.service == raw["scopes"].partition(":")[2] or raw["monitor_id"] == "160077064"
        assert alert.value is None and not alert.dimensions  # these monitors have no bridge.value line
        assert alert.fields["event_date"].startswith("2024-12-11T")
        assert Link(f"https://app.datadoghq.com/monitors/{raw['monitor_id']}", "Datadog monitor") in alert.links
        assert alert.categories == frozenset()
    counts = {s: sum(a.state is s for _, a in pairs) for s in AlertState}
    assert counts == {AlertState.FIRING: 25, AlertState.RESOLVED: 18}


def test_keep_trigger_and_recovery_of_one_scope_share_the_group_key() -> None:
    scope = "service:keep-api-matvey-kuk-workflows-fix"
    same = [(raw, a) for raw, a in keep_alerts() if raw["monitor_id"] == "160076582" and raw["scopes"] == scope]
    assert [raw["id"][-6:] for raw, _ in same] == ["396010", "313398", "287876"]
    assert [a.state for _, a in same] == [AlertState.FIRING, AlertState.FIRING, AlertState.RESOLVED]
    assert len({a.group_key for _, a in same}) == 1
    # The other monitor's recovery for the same scope is a different group.
    other = [a for raw, a in keep_alerts() if raw["monitor_id"] == "160077341" and raw["scopes"] == scope]
    assert other and other[0].group_key != same[0][1].group_key


def test_keep_warn_with_priority() -> None:
    raw, alert = next((r, a) for r, a in keep_alerts() if r["alert_transition"] == "Warn")
    assert alert.fields["priority"] == "P2"
    assert alert.fields["alert_type"] == "warning"
    assert alert.tags == (("environment", "production"), ("service", "keep-api"))


# --- our template and examples -------------------------------------------------------------------------------------

TEMPLATE_VARIABLES = [
    "$ID", "$ALERT_ID", "$ALERT_CYCLE_KEY", "$AGGREG_KEY", "$ALERT_TRANSITION", "$ALERT_TYPE", "$ALERT_PRIORITY",
    "$ALERT_SCOPE", "$TAGS", "$ALERT_METRIC", "$ALERT_QUERY", "$ALERT_STATUS", "$EVENT_TITLE", "$EVENT_TYPE",
    "$TEXT_ONLY_MSG", "$DATE", "$LINK", "$SNAPSHOT", "$HOSTNAME", "$ORG_ID", "$SECURITY_RULE_NAME",
    "$SECURITY_SIGNAL_ID", "$SECURITY_SIGNAL_SEVERITY", "$SECURITY_SIGNAL_TITLE", "$SECURITY_SIGNAL_MSG",
    "$SECURITY_RULE_ID", "$SECURITY_RULE_TYPE", "$SECURITY_SIGNAL_ATTRIBUTES", "$SECURITY_RULE_MATCHED_QUERIES",
    "$SECURITY_RULE_GROUP_BY_FIELDS", "$ALERT_TITLE", "$LAST_UPDATED", "$ORG_NAME",
]

REALISTIC = {
    "ID": "7905412263218861043", "ALERT_ID": "183664512", "ALERT_CYCLE_KEY": "", "AGGREG_KEY": "9bd4ac313a4d1e8f",
    "ALERT_TRANSITION": "Re-Triggered", "ALERT_TYPE": "error", "ALERT_PRIORITY": "P1",
    "ALERT_SCOPE": "service:checkout, env:prod", "TAGS": "monitor,dimension:users_affected_pct,service:checkout",
    "ALERT_METRIC": "checkout.failed_pct",
    "ALERT_QUERY": "avg(last_5m):avg:checkout.failed_pct{*} by {service,env} > 20",
    "ALERT_STATUS": "checkout.failed_pct over env:prod,service:checkout was > 20.0",
    "EVENT_TITLE": "[P1] [Re-Triggered] Checkout: \"users\" cannot pay",
    "EVENT_TYPE": "query_alert_monitor",
    "TEXT_ONLY_MSG": "Users affected.\nbridge.value: 31.2\n@webhook-incident-bridge",
    "DATE": "1767350520000", "LINK": "https://app.datadoghq.eu/event/event?id=7905412263218861043",
    "SNAPSHOT": "https://p.datadoghq.eu/snapshot/x.png", "HOSTNAME": "", "ORG_ID": "1200345",
    "ALERT_TITLE": "[Re-Triggered on {env:prod,service:checkout}] Checkout", "LAST_UPDATED": "1767350520000",
    "ORG_NAME": "Example Shop",
}


def substitute(template: str, values: dict[str, str]) -> str:
    """What Datadog does: every `$NAME` replaced by its JSON-escaped value ("" when unknown)."""
    return re.sub(r"\$([A-Z][A-Z0-9_]*)", lambda m: json.dumps(values.get(m.group(1), ""))[1:-1], template)


def test_template_is_json_with_every_variable_quoted() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    json.loads(text)
    missing = [v for v in TEMPLATE_VARIABLES if not re.search(re.escape(v) + r"(?![A-Z_])", text)]
    assert not missing
    # An unquoted variable that renders empty would break the JSON: every one must sit alone inside quotes.
    assert all(re.fullmatch(r'"\$[A-Z_]+"', m) for m in re.findall(r'"?\$[A-Z_]+"?', text))


def test_template_parses_after_substitution() -> None:
    body = substitute(TEMPLATE.read_text(encoding="utf-8"), REALISTIC).encode()
    alert = parse_one(body=body)
    assert alert.source_event_id == "7905412263218861043"
    assert alert.title == '[P1] [Re-Triggered] Checkout: "users" cannot pay'
    assert alert.group_key == "datadog:183664512:env:prod,service:checkout"
    assert alert.value == 31.2 and dict(alert.dimensions) == {"users_affected_pct": 31.2}
    assert alert.fields["renotify"] == "true" and alert.fields["transition"] == "Re-Triggered"
    assert alert.links[1] == Link("https://app.datadoghq.eu/monitors/183664512", "Datadog monitor")
    assert alert.categories == frozenset()  # empty $SECURITY_* values: not a security signal


def test_template_parses_a_security_signal_after_substitution() -> None:
    values = dict(REALISTIC, ALERT_ID="", SECURITY_RULE_NAME="Brute force", SECURITY_SIGNAL_ID="AQAAAYz",
                  SECURITY_SIGNAL_SEVERITY="critical", SECURITY_RULE_TYPE="log_detection",
                  SECURITY_SIGNAL_ATTRIBUTES='{"network": {"client": {"ip": "203.0.113.7"}}}',
                  SECURITY_RULE_MATCHED_QUERIES='["source:nginx"]', SECURITY_RULE_GROUP_BY_FIELDS='["@usr.id"]')
    alert = parse_one(body=substitute(TEMPLATE.read_text(encoding="utf-8"), values).encode())
    assert "security" in alert.categories
    assert alert.fields["security_signal_severity"] == "critical"
    assert alert.group_key == "datadog:signal:AQAAAYz"


EXPECTED_EXAMPLES = {
    "01-checkout-users-triggered.json": (AlertState.FIRING, "Triggered", {"users_affected_pct": 27.4}, set()),
    "02-checkout-customers-warn.json": (AlertState.FIRING, "Warn", {"customers_affected_pct": 7.5}, set()),
    "03-checkout-users-recovered.json": (AlertState.RESOLVED, "Recovered", {"users_affected_pct": 0.4}, set()),
    "04-payments-api-no-data.json": (AlertState.FIRING, "No Data", {}, set()),
    "05-cloud-cost-increase.json": (AlertState.FIRING, "Triggered", {"cloud_cost_increase_pct": 60.0},
                                    {"cloud_cost"}),
    "06-security-signal.json": (AlertState.FIRING, "Triggered", {}, {"security"}),
}


def test_examples_are_the_expected_story() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXPECTED_EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXPECTED_EXAMPLES))
def test_example_parses(name: str) -> None:
    path: Path = EXAMPLES / name
    template_keys = set(json.loads(TEMPLATE.read_text(encoding="utf-8")))
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert set(payload) == template_keys  # made from our template
    parsed = RECEIVER.parse(InboundRequest(body=path.read_bytes()), CTX)
    assert not parsed.notices
    alert = parsed.alerts[0]
    state, transition, dimensions, categories = EXPECTED_EXAMPLES[name]
    assert alert.state is state
    assert alert.fields["transition"] == transition
    assert dict(alert.dimensions) == dimensions
    assert alert.categories == frozenset(categories)
    assert alert.source_event_id == payload["id"]


def test_example_trigger_and_recovery_share_the_group_key() -> None:
    keys = [parse_one(body=(EXAMPLES / n).read_bytes()).group_key
            for n in ("01-checkout-users-triggered.json", "03-checkout-users-recovered.json")]
    assert keys[0] == keys[1]


def test_readme_json_blocks_are_valid_and_mention_the_webhook_outside_conditionals() -> None:
    readme = (REPO / "webhooks" / "datadog" / "README.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, re.S)]
    monitors = [b for b in blocks if "message" in b]
    assert len(monitors) == 2
    for monitor in monitors:
        message = monitor["message"]
        # A mention inside {{#is_alert}} would never see the recovery, and the incident would stay open.
        assert message.rindex("@webhook-incident-bridge") > message.rindex("{{/is_")
        assert "bridge.value: {{value}}" in message
        assert any(t.startswith("dimension:") for t in monitor["tags"])
