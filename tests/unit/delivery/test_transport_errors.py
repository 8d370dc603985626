"""A request to PagerDuty that gets no answer says why: a certificate the bridge does not trust names
BRIDGE_PAGERDUTY_CA_BUNDLE (in the error, the job's record and the worker's log line), a refused connection and a
timeout name the host. Both clients (Events, REST), against the fake PagerDuty over TLS on loopback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient, route_test_event
from bridge.delivery.pagerduty_rest import PagerDutyRest
from bridge.delivery.worker import DeliveryWorker
from bridge.errors import DeliveryError
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.loader import compile_sources
from bridge.store import Store
from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, ROUTING_KEY, FakePagerDuty
from tests.support.server import free_port

TLS_FIX = "; if a proxy inspects TLS, set BRIDGE_PAGERDUTY_CA_BUNDLE to its CA file"


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=True) as fake:
        yield fake
        fake.assert_no_invalid_requests()


def host(pd: FakePagerDuty) -> str:
    return f"127.0.0.1:{pd.port}"


def rest_for(url: str, **kwargs: object) -> PagerDutyRest:
    settings = Settings(api_token=Secret(API_KEY), pd_from=FROM_EMAIL, api_url=url, http_timeout_seconds=0.5)
    return PagerDutyRest(settings, **kwargs)  # type: ignore[arg-type]


def test_an_untrusted_certificate_on_the_events_api_names_the_ca_bundle(pd: FakePagerDuty) -> None:
    client = EventsClient(ROUTING_KEY, pd.url, timeout=2.0)  # the system's store: the fake's CA is not in it
    with pytest.raises(DeliveryError) as failed:
        client.send(route_test_event("incident-bridge:test:events-1", "test"))
    assert failed.value.message == (f"TLS certificate verification failed for {host(pd)}: self-signed certificate"
                                    f"{TLS_FIX}")
    assert (failed.value.reason, failed.value.retryable) == ("tls", True)
    assert pd.events == []


def test_the_same_request_with_the_ca_bundle_goes_through(pd: FakePagerDuty) -> None:
    settings = Settings(pagerduty_ca_bundle=pd.ca_file or "")
    client = EventsClient(ROUTING_KEY, pd.url, timeout=2.0, verify=settings.tls_verify())
    assert client.send(route_test_event("incident-bridge:test:events-1", "test"))["status"] == "success"


def test_an_untrusted_certificate_on_the_rest_api_names_the_ca_bundle(pd: FakePagerDuty) -> None:
    with rest_for(pd.url) as rest, pytest.raises(DeliveryError) as failed:
        rest.get_incident("PI00001")
    assert failed.value.message == (f"TLS certificate verification failed for {host(pd)}: self-signed certificate"
                                    f"{TLS_FIX}")
    assert failed.value.reason == "tls" and API_KEY not in failed.value.message


@pytest.mark.parametrize("api", ["events", "rest"])
def test_a_refused_connection_names_the_host(api: str) -> None:
    url = f"https://127.0.0.1:{free_port()}"  # free a moment ago: nothing listens, refused at once
    with pytest.raises(DeliveryError) as failed:
        if api == "events":
            EventsClient(ROUTING_KEY, url, timeout=2.0).send({"event_action": "resolve", "dedup_key": "k"})
        else:
            with rest_for(url) as rest:
                rest.get_incident("PI00001")
    assert failed.value.reason == "network" and failed.value.retryable
    assert f"unreachable at {url.removeprefix('https://')}: network error (ConnectError: " in failed.value.message
    assert "Connection refused" in failed.value.message


@pytest.mark.parametrize("api", ["events", "rest"])
def test_a_timeout_names_the_host(pd: FakePagerDuty, api: str) -> None:
    pd.delay(2.0, api=api)
    with pytest.raises(DeliveryError) as failed:
        if api == "events":
            EventsClient(ROUTING_KEY, pd.url, timeout=0.5, verify=pd.ssl_context).send(
                {"event_action": "resolve", "dedup_key": "k"})
        else:
            with rest_for(pd.url, verify=pd.ssl_context) as rest:
                rest.get_incident("PI00001")
    assert failed.value.reason == "timeout" and failed.value.retryable
    assert f"timed out at {host(pd)} (ReadTimeout" in failed.value.message


def page(store: Store) -> None:
    alert = Alert(source="test", source_event_id="e1", received_at=datetime.now(UTC), title="disk full",
                  state=AlertState.FIRING, group_key="g1")
    decision = Decision(action=Action.PAGE, severity=Severity.P1, rule="r", reasons=("rule r matched",),
                        urgency=Severity.P1.urgency)
    ruleset = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset
    accept_and_decide(store, [(alert, decision)], [], datetime.now(UTC), ruleset)


def test_the_worker_records_and_logs_the_tls_failure_then_delivers_once_the_bundle_is_set(
        store: Store, pd: FakePagerDuty, caplog: pytest.LogCaptureFixture) -> None:
    page(store)
    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url, http_timeout_seconds=2.0)
    worker = DeliveryWorker(store, settings, out=io.StringIO(), retry_multiplier=0.0, retry_max=0.0)
    with caplog.at_level(logging.WARNING, logger="bridge.delivery.worker"):
        assert worker.run_once()
    worker.close()
    (job,) = store.list_jobs()
    expected = f"TLS certificate verification failed for {host(pd)}: self-signed certificate{TLS_FIX}"
    assert (job["state"], job["last_error"], job["reason"]) == ("pending", expected, "tls")
    assert any(expected in r.getMessage() and "[tls]" in r.getMessage() for r in caplog.records)
    assert not any("ConnectError" in r.getMessage() for r in caplog.records)
    # The page stayed queued; the bridge restarted with the CA bundle sends it.
    fixed = DeliveryWorker(store, Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url,
                                           pagerduty_ca_bundle=pd.ca_file or ""), out=io.StringIO())
    assert fixed.run_once()
    fixed.close()
    assert [e.event_action for e in pd.events] == ["trigger"]
