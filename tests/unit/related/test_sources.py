"""The related-incident sources against the loopback fakes of PagerDuty and Datadog, and the lookup's budget.

Real clients (`pagerduty.RestApiV2Client`, `datadog-api-client`) talk HTTP to `tests/support/fakes`; nothing leaves
127.0.0.1. The budget test uses real time, with tolerances.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from bridge.related.lookup import find_related, format_note, format_text
from bridge.related.score import Candidate, Query
from bridge.related.sources import DatadogSource, PagerDutySource, StoreSource
from tests.support.fakes.datadog import FakeDatadog
from tests.support.fakes.pagerduty import FakePagerDuty, Incident

SERVICE = "PSVC001"  # the fake's default service


def add_pd_incidents(pd: FakePagerDuty, n: int, *, start: int = 0, hours_apart: float = 1.0) -> None:
    now = pd.clock()
    with pd.lock:
        for i in range(start, start + n):
            pd.incidents.append(Incident(
                id=f"PINC{i:05d}", number=i + 1, title=f"5xx error rate on /api/v1/cart/add #{i}",
                service_id=SERVICE, escalation_policy_id="PEP0001", status="resolved", urgency="high",
                created_at=now - 3600 * hours_apart * (i + 1), incident_key=f"datadog:1234:{i}"))


def pd_source(pd: FakePagerDuty, **kw: object) -> PagerDutySource:
    return PagerDutySource(pd.rest_client(), [SERVICE], window_days=int(kw.pop("window_days", 30)),  # type: ignore[call-overload]
                           service_map={"checkout": [SERVICE]}, **kw)  # type: ignore[arg-type]


QUERY = Query(id="q", title="5xx error rate on /api/v1/cart/add", services=("checkout",),
              created_at=datetime.now(UTC))


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def test_pagerduty_pages_through_incidents_of_the_service() -> None:
    with FakePagerDuty() as pd:
        add_pd_incidents(pd, 250)
        got = pd_source(pd).fetch(QUERY, deadline=deadline())
        lists = pd.requests_to("/incidents", method="GET")
        pd.assert_no_invalid_requests()
    assert len(got) == 250
    assert {c.pagerduty_id for c in got} == {f"PINC{i:05d}" for i in range(250)}
    first = got[0]
    assert first.source == "pagerduty" and first.services == ("checkout",)  # named through service_map
    assert first.dedup_key == "datadog:1234:0" and first.url
    assert [r.query["offset"] for r in lists] == [["0"], ["100"], ["200"]]
    assert all(r.query["limit"] == ["100"] and r.query["service_ids[]"] == [SERVICE] for r in lists)


def test_pagerduty_window_longer_than_six_months_is_sliced() -> None:
    with FakePagerDuty() as pd:
        add_pd_incidents(pd, 30, hours_apart=24 * 12)  # one every 12 days, over a year
        got = pd_source(pd, window_days=400).fetch(QUERY, deadline=deadline())
        slices = pd.requests_to("/incidents", method="GET")
        pd.assert_no_invalid_requests()  # the fake rejects a since/until range over 6 months
    assert len(slices) == 3
    assert len(got) == sum(1 for i in range(30) if 12 * (i + 1) < 400)


def test_pagerduty_finds_an_incident_opened_in_this_very_second() -> None:
    # `until` goes out in whole seconds and is exclusive: the storm's sibling, opened 0.3 s before the lookup in
    # the same second, must still be listed.
    now = datetime(2026, 12, 5, 22, 0, 0, 700_000, tzinfo=UTC)
    with FakePagerDuty(clock=lambda: now.timestamp()) as pd:
        with pd.lock:
            pd.incidents.append(Incident(
                id="PSIB001", number=1, title="5xx error rate on /api/v1/cart/add", service_id=SERVICE,
                escalation_policy_id="PEP0001", status="triggered", urgency="high",
                created_at=now.timestamp() - 0.3, incident_key="datadog:1234:sibling"))
        got = pd_source(pd, clock=lambda: now).fetch(QUERY, deadline=deadline())
        pd.assert_no_invalid_requests()
    assert [c.pagerduty_id for c in got] == ["PSIB001"]


def test_pagerduty_intelligence_missing_falls_back_and_is_remembered() -> None:
    with FakePagerDuty(abilities={"teams", "priorities", "urgencies"}) as pd:  # no event_intelligence: 403
        add_pd_incidents(pd, 3)
        source = pd_source(pd)
        query = Query(id="q", title="5xx", services=("checkout",), pagerduty_id="PINC00000")
        first = source.fetch(query, deadline=deadline())
        second = source.fetch(query, deadline=deadline())
        asked = [r.path for r in pd.requests if "past_incidents" in r.path or "related_incidents" in r.path]
    assert len(first) == len(second) == 3  # our own matching still has the service's incidents
    assert len(asked) == 2  # once each, then remembered
    assert source.unavailable == {"past_incidents": "HTTP 403", "related_incidents": "HTTP 403"}


def test_pagerduty_402_is_remembered_too() -> None:
    with FakePagerDuty() as pd:
        add_pd_incidents(pd, 2)
        pd.fail(402, path="/incidents/PINC00000/past_incidents")
        source = pd_source(pd)
        query = Query(id="q", title="5xx", services=("checkout",), pagerduty_id="PINC00000")
        source.fetch(query, deadline=deadline())
        source.fetch(query, deadline=deadline())
        past = [r for r in pd.requests if r.path.endswith("/past_incidents")]
    assert len(past) == 1
    assert source.unavailable == {"past_incidents": "HTTP 402"}


def test_pagerduty_past_and_related_incidents_become_hints() -> None:
    with FakePagerDuty() as pd:
        add_pd_incidents(pd, 3)
        pd.set_past_incidents("PINC00000", [{"incident": {"id": "PINC00002", "created_at": "2026-01-01T00:00:00Z",
                                                          "self": "x", "title": "5xx"}, "score": 46.8}])
        pd.set_related_incidents("PINC00000", [{"incident": {"id": "PINC00001", "title": "5xx"},
                                                "relationships": [{"type": "machine_learning_inferred"}]}])
        got = pd_source(pd).fetch(Query(id="q", title="5xx", pagerduty_id="PINC00000"), deadline=deadline())
    hints = {c.pagerduty_id: c.hint for c in got if c.hint}
    assert hints == {"PINC00002": "PagerDuty: similar past incident (score 47)",
                     "PINC00001": "PagerDuty: related (machine learning inferred)"}


def dd_configuration(dd: FakeDatadog) -> object:
    from datadog_api_client import Configuration

    config = Configuration(host=dd.url)  # search_incidents NOT enabled: the source must do it
    config.api_key["apiKeyAuth"] = dd.api_key
    config.api_key["appKeyAuth"] = dd.app_key
    return config


def test_datadog_search_through_the_real_client() -> None:
    now = time.time()
    with FakeDatadog() as dd:
        for i in range(150):
            dd.add_incident(f"Checkout 5xx errors #{i}", services=["checkout"], teams=["commerce"], severity="SEV-2",
                            created=now - 3600 * (i + 1), fields={"summary": {"type": "textbox", "value": "cart"}})
        dd.add_incident("Ancient", services=["checkout"], created=now - 86400 * 400)
        source = DatadogSource(dd_configuration(dd), window_days=30, app_url="https://app.datadoghq.eu")
        with pytest.warns(UserWarning, match="unstable operation"):
            got = source.fetch(QUERY, deadline=deadline())
        queries = list(dd.search_queries)
        dd.assert_no_invalid_requests()
    assert len(got) == 150  # the one older than the window is dropped
    assert queries and all(q == "state:(active OR stable OR resolved)" for q in queries)
    c = next(c for c in got if c.title == "Checkout 5xx errors #0")
    assert c.source == "datadog" and c.services == ("checkout",) and "team:commerce" in c.tags
    assert c.severity == "SEV-2" and c.datadog_public_id == "1"
    assert c.url == "https://app.datadoghq.eu/incidents/1"
    assert c.signature == "Checkout 5xx errors #0\ncart"


def store(n: int = 3) -> StoreSource:
    now = datetime.now(UTC)
    items = [Candidate(source="bridge", id=f"inc-{i}", title="5xx error rate on /api/v1/cart/add",
                       services=("checkout",), created_at=now - timedelta(days=i + 1), url=f"https://b/inc-{i}")
             for i in range(n)]
    return StoreSource(lambda: items)


def test_a_slow_source_leaves_the_others_results_within_the_budget() -> None:
    with FakePagerDuty() as pd, FakeDatadog() as dd:
        dd.add_incident("Checkout 5xx errors", services=["checkout"])
        pd.delay(3.0, path="/incidents")  # PagerDuty answers nothing for 3 s
        sources = [pd_source(pd), DatadogSource(dd_configuration(dd)), store()]
        started = time.monotonic()
        with pytest.warns(UserWarning):
            result = find_related(QUERY, sources, now=datetime.now(UTC), budget_seconds=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert [name for name, _ in result.missing_sources] == ["pagerduty"]
    assert "timed out" in result.missing_sources[0][1]
    assert result.sources_used == ["datadog", "bridge"]
    assert {s.candidate.source for s in result.results} == {"datadog", "bridge"}
    note = format_note(result)
    assert "Not searched: pagerduty (timed out" in note and "https://b/inc-0" in note
    assert "Missing source pagerduty" in format_text(result)
    body = result.to_json()
    assert body["missing_sources"][0]["source"] == "pagerduty" and len(body["results"]) == 4


@pytest.mark.filterwarnings("ignore:Using unstable operation")
def test_a_failing_source_is_named_with_its_status() -> None:
    with FakeDatadog() as dd:
        dd.fail(500)
        result = find_related(QUERY, [DatadogSource(dd_configuration(dd)), store(2)],
                              now=datetime.now(UTC), budget_seconds=3.0)
    assert result.missing_sources == [("datadog", "HTTP 500")]
    assert [s.candidate.id for s in result.results] == ["inc-0", "inc-1"]
    assert "fake-dd" not in format_note(result) + format_text(result)  # no key ever reaches the text


def test_the_same_incident_from_pagerduty_and_the_store_is_listed_once() -> None:
    with FakePagerDuty() as pd:
        add_pd_incidents(pd, 1)
        ours = Candidate(source="bridge", id="inc-9", title="5xx error rate on /api/v1/cart/add #0",
                         services=("checkout",), dedup_key="datadog:1234:0", monitor_id="1234",
                         created_at=datetime.now(UTC) - timedelta(hours=1))
        result = find_related(QUERY, [pd_source(pd), StoreSource(lambda: [ours])], now=datetime.now(UTC))
    (only,) = result.results
    assert set(only.candidate.all_sources) == {"pagerduty", "bridge"}
    assert only.candidate.pagerduty_id == "PINC00000" and only.candidate.monitor_id == "1234"
