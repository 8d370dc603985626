"""The API's pages and filters (`bridge.store.views`): which rows each query matches, the total, keyset cursors,
and the 400s for bad parameters. Rows are written straight into a SQLite store (the pipeline's outcomes included),
so each table row names exactly the alerts it expects."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge.errors import RequestError
from bridge.store import Store, alerts, incidents
from bridge.store.views import (
    AlertQuery,
    IncidentQuery,
    alert_page,
    alert_query,
    decode_cursor,
    encode_cursor,
    incident_page,
    incident_query,
    page_limit,
    parse_time,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()

# (event id, source, service, severity, action, outcome, state, received at, incident number or None)
ALERTS = [
    ("a1", "datadog", "checkout", "P1", "page", "opened", "firing", T0, 1),
    ("a2", "datadog", "checkout", "P1", "page", "attached", "firing", T0 + 60, 1),
    ("a3", "alertmanager", "search", "P2", "page", "opened", "firing", T0 + 120, 2),
    ("a4", "datadog", "checkout", None, "resolve", "resolved", "resolved", T0 + 180, 1),
    ("a5", "aws-sns", None, None, "record", "recorded", "firing", T0 + 240, None),
    ("a6", "alertmanager", "search", "P3", "suppress", "suppressed", "firing", T0 + 300, None),
    ("a7", "generic", "billing", "P0", "page", "pending", "firing", T0 + 360, None),
]
# (number, source, service, severity, status, opened at)
INCIDENTS = [
    (1, "datadog", "checkout", "P1", "resolved", T0),
    (2, "alertmanager", "search", "P2", "open", T0 + 120),
]


@pytest.fixture
def seeded(store: Store) -> Store:
    with store.transaction() as conn:
        ids = {}
        for number, source, service, severity, status, opened in INCIDENTS:
            ids[number] = conn.execute(incidents.insert().values(
                dedup_key=f"k{number}", status=status, severity=severity, title=f"incident {number}",
                source=source, service=service, rule="r", opened_at=opened, last_alert_at=opened,
                resolved_at=opened + 180 if status == "resolved" else None, alert_count=1, categories_json="[]",
                dimensions_json="{}", tags_json="[]", details_json="{}")).inserted_primary_key[0]
        for event, source, service, severity, action, outcome, state, at, incident in ALERTS:
            conn.execute(alerts.insert().values(
                source=source, source_event_id=event, received_at=at, title=event, state=state, group_key=event,
                dedup_key=event, service=service, severity=severity, action=action, rule=None, outcome=outcome,
                incident_id=ids[incident] if incident else None, alert_json=json.dumps({"title": event}),
                decision_json="{}", journaled_at=at, decided_at=None if outcome == "pending" else at))
    return store


def events(page_items: list[dict[str, object]]) -> list[object]:
    return [a["source_event_id"] for a in page_items]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["a7", "a6", "a5", "a4", "a3", "a2", "a1"]),
    ({"source": ["datadog"]}, ["a4", "a2", "a1"]),
    ({"source": ["datadog,aws-sns"]}, ["a5", "a4", "a2", "a1"]),
    ({"source": ["datadog", "generic"]}, ["a7", "a4", "a2", "a1"]),
    ({"service": ["search"]}, ["a6", "a3"]),
    ({"severity": ["P1"]}, ["a2", "a1"]),
    ({"severity": ["p0,p3"]}, ["a7", "a6"]),
    ({"severity": ["none"]}, ["a5", "a4"]),
    ({"action": ["resolve"]}, ["a4"]),
    ({"outcome": ["opened"]}, ["a3", "a1"]),
    ({"outcome": ["pending"]}, ["a7"]),
    ({"state": ["resolved"]}, ["a4"]),
    ({"since": [str(T0 + 120)]}, ["a7", "a6", "a5", "a4", "a3"]),
    ({"until": ["2026-03-01T12:02:00Z"]}, ["a2", "a1"]),
    ({"since": ["2026-03-01T13:01:00+01:00"], "until": [str(int(T0 + 240))]}, ["a4", "a3", "a2"]),
    ({"source": ["datadog"], "action": ["page"], "severity": ["P1"]}, ["a2", "a1"]),
    ({"source": ["nagios"]}, []),
], ids=["all", "source", "sources-comma", "sources-repeated", "service", "severity", "severity-lowercase",
        "no-severity", "action", "outcome", "pending", "state", "since-epoch", "until-rfc3339", "window-offset",
        "combined", "no-match"])
def test_alert_filters(seeded: Store, params: dict[str, list[str]], expected: list[str]) -> None:
    page = alert_page(seeded, alert_query(params), None, 100)
    assert events(page.items) == expected
    assert page.total == len(expected)
    assert page.next_cursor is None


def test_alerts_of_one_incident(seeded: Store) -> None:
    first = incident_page(seeded, IncidentQuery(service=("checkout",))).items[0]["id"]
    page = alert_page(seeded, alert_query({"incident_id": [str(first)]}))
    assert events(page.items) == ["a4", "a2", "a1"]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["k2", "k1"]),
    ({"status": ["open"]}, ["k2"]),
    ({"status": ["RESOLVED"]}, ["k1"]),
    ({"source": ["datadog"]}, ["k1"]),
    ({"service": ["search"]}, ["k2"]),
    ({"severity": ["P2"]}, ["k2"]),
    ({"action": ["resolve"]}, ["k1"]),
    ({"outcome": ["opened"]}, ["k2", "k1"]),
    ({"outcome": ["attached"], "action": ["page"]}, ["k1"]),
    ({"outcome": ["suppressed"]}, []),
    ({"since": [str(T0 + 1)]}, ["k2"]),
    ({"until": ["2026-03-01T12:00:01Z"]}, ["k1"]),
], ids=["all", "open", "resolved-uppercase", "source", "service", "severity", "had-a-recovery", "opened",
        "attached-page", "outcome-none", "since", "until"])
def test_incident_filters(seeded: Store, params: dict[str, list[str]], expected: list[str]) -> None:
    page = incident_page(seeded, incident_query(params))
    assert [i["dedup_key"] for i in page.items] == expected
    assert page.total == len(expected)


def test_cursor_pages_through_every_match_once_with_the_total(seeded: Store) -> None:
    query = AlertQuery(source=("datadog", "alertmanager"))
    seen: list[object] = []
    cursor = None
    pages = 0
    while True:
        page = alert_page(seeded, query, cursor, 2)
        assert page.total == 5  # every page counts all matches, not only its own
        seen += events(page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["a6", "a4", "a3", "a2", "a1"]
    assert pages == 3


def test_rows_arriving_while_paging_do_not_shift_the_next_page(seeded: Store) -> None:
    first = alert_page(seeded, AlertQuery(), None, 3)
    with seeded.transaction() as conn:
        conn.execute(alerts.insert().values(
            source="datadog", source_event_id="late", received_at=T0 + 900, title="late", state="firing",
            group_key="late", dedup_key="late", action="record", outcome="recorded", alert_json="{}",
            decision_json="{}", journaled_at=T0 + 900, decided_at=T0 + 900))
    second = alert_page(seeded, AlertQuery(), first.next_cursor, 3)
    assert events(first.items) == ["a7", "a6", "a5"]
    assert events(second.items) == ["a4", "a3", "a2"]
    assert second.total == 8


def test_exact_last_page_has_no_cursor(seeded: Store) -> None:
    page = alert_page(seeded, AlertQuery(), None, 7)
    assert len(page.items) == 7 and page.next_cursor is None


@pytest.mark.parametrize("last_id", [0, 1, 42, 2**40])
def test_cursor_round_trip(last_id: int) -> None:
    assert decode_cursor(encode_cursor(last_id)) == last_id


@pytest.mark.parametrize("cursor", ["!!!", "abc", encode_cursor(5)[:-1] + "*", "azE6LTE", "azI6NQ", "MTIz",
                                    "azE6MTIzNDU2Nzg5MDEyMzQ1Njc4OTA"],
                         ids=["not-base64", "random", "mangled", "negative", "other-version", "no-prefix", "huge"])
def test_malformed_cursor_is_a_400_naming_it(seeded: Store, cursor: str) -> None:
    with pytest.raises(RequestError) as caught:
        alert_page(seeded, AlertQuery(), cursor, 10)
    assert caught.value.status == 400 and "cursor" in caught.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("1772366400", T0),
    ("1772366400.5", T0 + 0.5),
    ("2026-03-01T12:00:00Z", T0),
    ("2026-03-01T12:00:00.250Z", T0 + 0.25),
    ("2026-03-01T14:00:00+02:00", T0),
    ("2026-03-01t12:00:00z", T0),
], ids=["epoch", "epoch-fraction", "utc", "fraction", "offset", "lowercase"])
def test_times_accepted(text: str, expected: float) -> None:
    assert parse_time(text, "since") == expected


@pytest.mark.parametrize(("params", "names"), [
    ({"severity": ["P9"]}, ["severity", "P0, P1, P2, P3, none"]),
    ({"action": ["page,explode"]}, ["action", "page, resolve, record, suppress"]),
    ({"outcome": ["paged"]}, ["outcome", "opened"]),
    ({"state": ["maybe"]}, ["state", "firing, resolved"]),
    ({"since": ["yesterday"]}, ["since", "RFC 3339"]),
    ({"until": ["2026-03-01T12:00:00"]}, ["until", "offset"]),
    ({"since": ["-5"]}, ["since"]),
    ({"until": ["nan"]}, ["until"]),
    ({"until": ["inf"]}, ["until"]),
    ({"incident_id": ["x"]}, ["incident_id"]),
    ({"limit": ["ten"]}, ["limit"]),
], ids=["severity", "action", "outcome", "state", "since-word", "until-naive", "negative", "nan", "inf",
        "incident-id", "limit"])
def test_bad_alert_parameters_name_themselves(params: dict[str, list[str]], names: list[str]) -> None:
    with pytest.raises(RequestError) as caught:
        alert_query(params)
        page_limit(params)
    assert caught.value.status == 400 and caught.value.code == "bad_parameter"
    for name in names:
        assert name in caught.value.message


@pytest.mark.parametrize(("params", "names"), [
    ({"status": ["closed"]}, ["status", "open, resolved"]),
    ({"severity": ["P9"]}, ["severity", "P0, P1, P2, P3, none"]),
    ({"since": ["x"]}, ["since", "RFC 3339"]),
], ids=["status", "severity", "since"])
def test_bad_incident_parameters_name_themselves(params: dict[str, list[str]], names: list[str]) -> None:
    with pytest.raises(RequestError) as caught:
        incident_query(params)
    assert caught.value.status == 400
    for name in names:
        assert name in caught.value.message


@pytest.mark.parametrize(("params", "expected"), [({}, 100), ({"limit": ["0"]}, 1), ({"limit": ["5"]}, 5),
                                                  ({"limit": ["100000"]}, 1000)],
                         ids=["default", "at-least-one", "given", "at-most-1000"])
def test_limit(params: dict[str, list[str]], expected: int) -> None:
    assert page_limit(params) == expected
