"""Route tests are left out of related incidents, from every source: a test page is recent and on the same service,
so it would rank among the first while saying nothing of the problem at hand.

The test pages are made the way `notify test` makes them: a REST incident through `PagerDutyRest` (titled by
`route_test_title`, keyed `incident-bridge:test:...`) and an Events API trigger labelled "[TEST]"; on loopback fakes
of PagerDuty and Datadog, and in a real store.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.pagerduty_rest import PagerDutyRest, route_test_title
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.stage import accept_and_decide
from bridge.related.lookup import find_related, is_test_page, store_candidates
from bridge.related.score import Candidate, Index, Query, merge
from bridge.related.sources import DatadogSource, PagerDutySource, StoreSource
from bridge.rules.loader import compile_sources
from bridge.rules.model import Target
from bridge.store import Store
from tests.support.fakes.datadog import FakeDatadog
from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, FakePagerDuty

SERVICE = "PSVC001"  # the fake's default service
TITLE = "5xx error rate on /api/v1/cart/add"
QUERY = Query(id="q", title=TITLE, services=("checkout",), created_at=datetime.now(UTC))
NO_STORMS = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset


@pytest.mark.parametrize(("title", "dedup_key", "test_page"), [
    (route_test_title("Incident Coordinator"), None, True),
    ("[TEST] incident-bridge route test - safe to ignore", "some-key", True),
    ("  [test] lower case, leading blanks", None, True),
    ("PagerDuty's own title", "incident-bridge:test:5f0c", True),
    ("checkout [TEST] environment is down", None, False),
    (TITLE, "datadog:1234:0", False),
    (TITLE, None, False),
], ids=["route-test-title", "events-label", "lower-case", "rest-incident-key", "label-inside", "keyed", "plain"])
def test_a_test_page_is_told_by_its_label_or_its_key(title: str, dedup_key: str | None, test_page: bool) -> None:
    candidate = Candidate(source="pagerduty", id="P1", title=title, dedup_key=dedup_key)
    assert is_test_page(candidate) is test_page


def stored_incidents(tmp_path: Path) -> Store:
    """A store with one real incident of the query's service and one labelled as a test."""
    store = Store.open(f"sqlite:///{tmp_path / 'b.db'}")
    now = datetime.now(UTC) - timedelta(hours=2)
    for n, title in enumerate((TITLE, "[TEST] incident-bridge route test - safe to ignore")):
        alert = Alert(source="datadog", source_event_id=str(n), received_at=now, title=title,
                      state=AlertState.FIRING, group_key=f"g{n}", service="checkout")
        decision = Decision(action=Action.PAGE, severity=Severity.P2, rule="r", urgency="low")
        accept_and_decide(store, [(alert, decision)], [], now, NO_STORMS)
    return store


def datadog_configuration(dd: FakeDatadog) -> object:
    from datadog_api_client import Configuration

    config = Configuration(host=dd.url)
    config.api_key["apiKeyAuth"] = dd.api_key
    config.api_key["appKeyAuth"] = dd.app_key
    return config


@pytest.mark.filterwarnings("ignore:Using unstable operation")
def test_test_pages_from_every_source_are_left_out(tmp_path: Path) -> None:
    store = stored_incidents(tmp_path)
    # PagerDuty's clock an hour behind: its incidents are an hour old (a list asked `until` now, to the second,
    # would not have one created this very second).
    with FakePagerDuty(clock=lambda: time.time() - 3600) as pd, FakeDatadog() as dd:
        # A real past incident in PagerDuty, and the two kinds of test page `notify test` leaves there.
        events = pd.events_client()
        events.trigger(f"{TITLE} (last week)", "web-1", dedup_key="datadog:1234:0", severity="error")
        events.trigger("[TEST] incident-bridge route test - safe to ignore", "incident-bridge",
                       dedup_key="incident-bridge-route-test-1", severity="info")
        events.close()
        rest = PagerDutyRest(Settings(api_token=Secret(API_KEY), api_url=pd.url, pd_from=FROM_EMAIL),
                             verify=pd.ssl_context)
        rest.create_test_incident(SERVICE, Target("escalation_policy", "PEP0002"),
                                  route_test_title("Incident Coordinator"), "Route check; no action needed.")
        rest.close()
        # Datadog Incident Management mirrors pages; its copy of a test page carries the label too.
        dd.add_incident("Checkout 5xx errors", services=["checkout"], created=time.time() - 3600)
        dd.add_incident("[TEST] incident-bridge route test - safe to ignore", services=["checkout"],
                        created=time.time() - 60)

        def sources() -> list[object]:
            return [PagerDutySource(pd.rest_client(), [SERVICE], window_days=30,
                                    service_map={"checkout": [SERVICE]}),
                    DatadogSource(datadog_configuration(dd)), StoreSource(lambda: store_candidates(store))]

        raw = {s.name: s.fetch(QUERY, deadline=time.monotonic() + 10)  # type: ignore[attr-defined]
               for s in sources()}
        result = find_related(QUERY, sources(), now=datetime.now(UTC),  # type: ignore[arg-type]
                              budget_seconds=5.0)
        pd.assert_no_invalid_requests()
    assert result.missing_sources == []
    # Every source has its test pages, and without the rule they take places among the five shown: recent, and
    # on the same service.
    assert {name for name, found in raw.items() if any(is_test_page(c) for c in found)} == {
        "pagerduty", "datadog", "bridge"}
    unfiltered = Index(merge(raw)).rank(QUERY, now=datetime.now(UTC), limit=5)
    assert sum(is_test_page(s.candidate) for s in unfiltered) >= 2
    titles = [s.candidate.title for s in result.results]
    assert not any("[TEST]" in t for t in titles), titles
    assert {TITLE, f"{TITLE} (last week)", "Checkout 5xx errors"} <= set(titles)
