"""End to end with a REAL Prometheus Alertmanager: API v2 alerts in, webhook to the real bridge, PagerDuty fake.

Guarantees, not code paths:
- one Alertmanager notification carrying two alerts becomes two incidents, each paged once at the severity
  its own `value` gives (27.5 % of users -> P0/critical, 6 % -> P2/warning), keyed `alertmanager:<fingerprint>`;
- resolving one alert in Alertmanager resolves that incident, and only that one;
- the token works from Alertmanager's `http_config.authorization` (Bearer) and `http_config.basic_auth`
  (password), both read from files; an Alertmanager holding the wrong token is refused (401) and nothing is
  stored or paged.

Alertmanager runs with group_wait = group_interval = 1 s, so each notification takes a second or two; every
wait is bounded at 30 s. A second webhook target, a stdlib capture server, receives the same notifications:
its bodies are the real payloads, printed whenever a wait fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.alertmanager import (
    AlertmanagerProcess,
    CaptureServer,
    WebhookTarget,
    api_alert,
    now,
    require_binary,
)
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import ROUTING_KEY, TOKEN, BridgeProcess, bridge_env, wait_for

pytestmark = pytest.mark.integration

WAIT = 30.0  # seconds; a notification normally arrives group_wait (1 s) + a little after the alert

StartAlertmanager = Callable[..., AlertmanagerProcess]


@pytest.fixture(scope="module")
def alertmanager_binary() -> str:
    return require_binary()


@pytest.fixture
def pagerduty(alertmanager_binary: str) -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture
def bridge(tmp_path: Path, pagerduty: FakePagerDuty) -> Iterator[BridgeProcess]:
    proc = BridgeProcess(tmp_path, bridge_env(tmp_path, PAGERDUTY_ROUTING_KEY=ROUTING_KEY,
                                              PAGERDUTY_EVENTS_URL=pagerduty.url)).start()
    yield proc
    proc.kill()


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


@pytest.fixture
def start_alertmanager(alertmanager_binary: str, tmp_path: Path, bridge: BridgeProcess,
                       capture: CaptureServer) -> Iterator[StartAlertmanager]:
    """Start an Alertmanager whose receiver posts to the bridge (with `token`) and to the capture server."""
    started: list[AlertmanagerProcess] = []

    def start(token: str, *, basic_auth: bool = False) -> AlertmanagerProcess:
        am = AlertmanagerProcess(alertmanager_binary, tmp_path, [
            WebhookTarget(f"{bridge.url}/webhooks/alertmanager", token=token, basic_auth=basic_auth),
            WebhookTarget(capture.url, token=token, basic_auth=basic_auth),
        ])
        started.append(am)
        return am.start()

    yield start
    for am in started:
        am.stop()


def checkout_alert(instance: str, value: str, *, starts_at: dt.datetime, ends_at: dt.datetime) -> dict[str, Any]:
    """The same alert rule on two instances: same group labels (alertname, service), so one notification."""
    return api_alert(
        {"alertname": "CheckoutErrors", "service": "checkout", "dimension": "users_affected_pct",
         "severity": "page", "instance": instance},
        {"summary": f"Checkout failing for {value} % of users on {instance}", "value": value},
        starts_at=starts_at, ends_at=ends_at)


def explain(am: AlertmanagerProcess, bridge: BridgeProcess, capture: CaptureServer) -> str:
    """What each party saw: appended to a failed wait so the report carries the real payloads."""
    return (f"\n--- captured Alertmanager notifications ---\n{capture.dump()}"
            f"\n--- Alertmanager log (tail) ---\n{am.output()[-4000:]}"
            f"\n--- bridge log (tail) ---\n{bridge.output()[-4000:]}")


def wait_until(predicate: Callable[[], Any], why: str, am: AlertmanagerProcess, bridge: BridgeProcess,
               capture: CaptureServer) -> Any:
    try:
        return wait_for(predicate, timeout=WAIT, interval=0.1)
    except AssertionError:
        raise AssertionError(f"{why} within {WAIT}s{explain(am, bridge, capture)}") from None


def stored_alerts(bridge: BridgeProcess, dedup_key: str) -> list[dict[str, Any]]:
    response = bridge.get("/api/v1/alerts")
    assert response.status_code == 200, response.text
    return [a for a in response.json()["alerts"] if a["dedup_key"] == dedup_key]


def test_a_batch_pages_each_alert_at_its_severity_and_a_resolve_resolves_only_its_incident(
        start_alertmanager: StartAlertmanager, bridge: BridgeProcess, pagerduty: FakePagerDuty,
        capture: CaptureServer) -> None:
    am = start_alertmanager(TOKEN)
    started = now()
    later = started + dt.timedelta(hours=1)
    am.post_alerts([checkout_alert("checkout-1", "27.5", starts_at=started, ends_at=later),
                    checkout_alert("checkout-2", "6", starts_at=started, ends_at=later)])
    p0_key = f"alertmanager:{am.fingerprint(instance='checkout-1')}"
    p2_key = f"alertmanager:{am.fingerprint(instance='checkout-2')}"

    [p0] = wait_until(lambda: pagerduty.triggers_for(p0_key), f"no trigger for {p0_key}", am, bridge, capture)
    [p2] = wait_until(lambda: pagerduty.triggers_for(p2_key), f"no trigger for {p2_key}", am, bridge, capture)
    assert p0.body["payload"]["severity"] == "critical"
    assert p0.body["payload"]["custom_details"]["rule"] == "alertmanager"
    assert p2.body["payload"]["severity"] == "warning"

    # Both alerts came in ONE notification (same group), and the bridge split it into two incidents.
    first = capture.bodies()[0]
    assert first["version"] == "4" and first["status"] == "firing"
    assert sorted(a["fingerprint"] for a in first["alerts"]) == sorted(k.split(":", 1)[1] for k in (p0_key, p2_key))

    [stored_p0] = stored_alerts(bridge, p0_key)
    assert stored_p0["severity"] == "P0" and stored_p0["rule"] == "alertmanager" and stored_p0["action"] == "page"
    assert stored_p0["decision"]["severity"] == "P0"
    assert stored_p0["state"] == "firing" and stored_p0["source"] == "alertmanager"
    [stored_p2] = stored_alerts(bridge, p2_key)
    assert stored_p2["severity"] == "P2" and stored_p2["rule"] == "alertmanager"
    assert stored_p0["incident_id"] != stored_p2["incident_id"]

    # Resolve the P0 alert in Alertmanager (as Prometheus does: the same alert, endsAt now).
    am.post_alerts([checkout_alert("checkout-1", "27.5", starts_at=started, ends_at=now())])
    wait_until(lambda: [e for e in pagerduty.events if e.event_action == "resolve" and e.dedup_key == p0_key],
               f"no resolve for {p0_key}", am, bridge, capture)
    resolved = pagerduty.alert(p0_key, ROUTING_KEY)
    assert resolved is not None and resolved.status == "resolved"

    # Exactly one page each: the resolve notification repeats the still-firing P2 alert, which is a duplicate.
    assert len(pagerduty.triggers_for(p0_key)) == 1
    assert len(pagerduty.triggers_for(p2_key)) == 1
    assert [e.event_action for e in pagerduty.events if e.dedup_key == p2_key] == ["trigger"]
    still_open = pagerduty.alert(p2_key, ROUTING_KEY)
    assert still_open is not None and still_open.status != "resolved"
    resolve_body = next(b for b in capture.bodies() if any(a["status"] == "resolved" for a in b["alerts"]))
    assert {a["fingerprint"]: a["status"] for a in resolve_body["alerts"]} == {
        p0_key.split(":", 1)[1]: "resolved", p2_key.split(":", 1)[1]: "firing"}


def test_a_wrong_token_in_alertmanager_is_refused_and_nothing_pages(
        start_alertmanager: StartAlertmanager, bridge: BridgeProcess, pagerduty: FakePagerDuty,
        capture: CaptureServer) -> None:
    wrong = "zz-wrong-webhook-token-4242"
    am = start_alertmanager(wrong)
    started = now()
    am.post_alerts([checkout_alert("checkout-1", "27.5", starts_at=started,
                                   ends_at=started + dt.timedelta(hours=1))])

    # The notification went out (the capture server got it, with the configured credentials)...
    [sent] = wait_until(lambda: capture.requests, "Alertmanager sent no notification", am, bridge, capture)
    assert sent.headers.get("authorization") == f"Bearer {wrong}"
    # ...and the bridge's copy failed: Alertmanager counts it and logs the 401 (a 4xx is not retried).
    wait_until(lambda: am.metric("alertmanager_notifications_failed_total", integration="webhook") >= 1,
               "Alertmanager recorded no failed webhook notification", am, bridge, capture)
    assert "unexpected status code 401" in am.output(), explain(am, bridge, capture)
    assert '"POST /webhooks/alertmanager HTTP/1.1" 401' in bridge.output()
    # Alertmanager logs the refusal's body verbatim: the bridge must not echo the presented token in it.
    assert wrong not in am.output()

    response = bridge.get("/api/v1/alerts")
    assert response.status_code == 200 and response.json()["alerts"] == []
    assert pagerduty.events == [] and pagerduty.requests_to("/v2/enqueue") == []
    assert wrong not in bridge.output()


def test_the_token_as_basic_auth_password_file_is_accepted(
        start_alertmanager: StartAlertmanager, bridge: BridgeProcess, pagerduty: FakePagerDuty,
        capture: CaptureServer) -> None:
    am = start_alertmanager(TOKEN, basic_auth=True)
    started = now()
    am.post_alerts([checkout_alert("checkout-3", "12", starts_at=started,
                                   ends_at=started + dt.timedelta(hours=1))])
    key = f"alertmanager:{am.fingerprint(instance='checkout-3')}"
    [trigger] = wait_until(lambda: pagerduty.triggers_for(key), f"no trigger for {key}", am, bridge, capture)
    assert trigger.body["payload"]["severity"] == "error"  # 12 % of users: P1
    assert capture.requests[0].headers.get("authorization", "").startswith("Basic ")
