"""The loopback fakes of PagerDuty and Datadog, exercised over real HTTP with real clients.

Other integration tests trust these fakes to refuse what PagerDuty refuses and to misbehave on cue, so each
guarantee they document is pinned here: schema validation and documented limits, de-duplication state,
every fault kind, REST incidents/notes/responders/abilities/pagination, and Datadog search through
`datadog-api-client`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import pagerduty
import pytest

from tests.support.fakes.datadog import FakeDatadog
from tests.support.fakes.pagerduty import (
    API_KEY,
    FROM_EMAIL,
    ROUTING_KEY,
    FakePagerDuty,
    ManualClock,
)

pytestmark = pytest.mark.integration

REST_HEADERS = {
    "Authorization": f"Token token={API_KEY}",
    "Accept": "application/vnd.pagerduty+json;version=2",
    "From": FROM_EMAIL,
}


def trigger(dedup_key: str | None = "dd:1234:host:web-1", **overrides: Any) -> dict[str, Any]:
    """A valid Events API v2 trigger (the example in reference/pagerduty.md §1.2), with overrides."""
    event: dict[str, Any] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "CPU > 90% on web-1", "source": "web-1", "severity": "critical"},
        "client": "incident-bridge",
    }
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    event.update(overrides)
    return event


def action(kind: str, dedup_key: str, routing_key: str = ROUTING_KEY) -> dict[str, Any]:
    """An acknowledge or resolve event."""
    return {"routing_key": routing_key, "event_action": kind, "dedup_key": dedup_key}


def new_incident(title: str = "Disk full", **extra: Any) -> dict[str, Any]:
    """A `POST /incidents` entity (without the `incident` wrapper: `rpost` adds it)."""
    return {
        "type": "incident",
        "title": title,
        "service": {"id": "PSVC001", "type": "service_reference"},
        "body": {"type": "incident_body", "details": "A disk is getting full."},
        **extra,
    }


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
def http(pd: FakePagerDuty) -> Iterator[httpx2.Client]:
    with pd.http_client() as client:
        yield client


@pytest.fixture
def rest(pd: FakePagerDuty) -> Iterator[Any]:
    with pd.rest_client() as client:
        yield client


# ---------------------------------------------------------------------------------------------------------------
# Events API v2: validation
# ---------------------------------------------------------------------------------------------------------------


def test_valid_trigger_is_accepted_and_recorded(pd: FakePagerDuty, http: httpx2.Client) -> None:
    response = http.post("/v2/enqueue", json=trigger())

    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": "dd:1234:host:web-1"}
    [event] = pd.events
    assert (event.event_action, event.dedup_key, event.summary) == (
        "trigger",
        "dd:1234:host:web-1",
        "CPU > 90% on web-1",
    )
    assert event.received_at > 0
    assert [a.dedup_key for a in pd.open_alerts()] == ["dd:1234:host:web-1"]
    pd.assert_no_invalid_requests()


def test_real_events_client_triggers_and_resolves(pd: FakePagerDuty) -> None:
    with pd.events_client() as client:
        key = client.trigger("CPU > 90% on web-1", "web-1", dedup_key="k1", severity="warning")
        client.resolve(key)

    assert key == "k1"
    assert [e.event_action for e in pd.events] == ["trigger", "resolve"]
    assert pd.open_alerts() == []
    assert pd.incidents_for("k1")[0].urgency == "low"  # warning -> low urgency
    pd.assert_no_invalid_requests()


def test_severity_p1_is_rejected_as_invalid(pd: FakePagerDuty, http: httpx2.Client) -> None:
    event = trigger()
    event["payload"]["severity"] = "P1"  # a priority, not one of PagerDuty's four severities

    response = http.post("/v2/enqueue", json=event)

    assert response.status_code == 400
    body = response.json()
    assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
    assert any(e.startswith("payload.severity: 'P1' is not one of") for e in body["errors"])
    assert pd.events == [] and pd.alerts == []
    [rejected] = pd.invalid_requests
    assert rejected.status == 400 and rejected.outcome == "invalid"
    with pytest.raises(AssertionError, match="payload.severity"):
        pd.assert_no_invalid_requests()


def _big_event() -> dict[str, Any]:
    event = trigger()
    event["payload"]["custom_details"] = {"blob": "x" * (512 * 1024)}
    return event


@pytest.mark.parametrize(
    ("event", "error"),
    [
        pytest.param(
            trigger(payload={"summary": "s" * 1025, "source": "h", "severity": "info"}),
            "'payload.summary' is longer than 1024",
            id="summary-over-1024",
        ),
        pytest.param(trigger(dedup_key="k" * 256), "'dedup_key' is longer than 255", id="dedup-key-over-255"),
        pytest.param(
            {"routing_key": ROUTING_KEY, "event_action": "resolve"},
            "'dedup_key' is required",
            id="resolve-without-dedup-key",
        ),
        pytest.param(
            {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": ""},
            "'dedup_key' is required",
            id="ack-with-empty-dedup-key",
        ),
        pytest.param(
            {k: v for k, v in trigger().items() if k != "routing_key"},
            "'routing_key' is a required",
            id="no-routing-key",
        ),
        pytest.param(trigger(routing_key=""), "'routing_key' is missing or blank", id="blank-routing-key"),
        pytest.param(
            {k: v for k, v in trigger().items() if k != "payload"}, "'payload' is missing", id="trigger-without-payload"
        ),
        pytest.param(
            trigger(payload={"summary": "s", "source": " ", "severity": "info"}),
            "'payload.source' is missing or blank",
            id="blank-source",
        ),
        pytest.param(
            trigger(payload={"summary": "s", "severity": "info"}), "'source' is a required property", id="no-source"
        ),
        pytest.param(trigger(event_action="escalate"), "event_action: 'escalate' is not one of", id="bad-action"),
        pytest.param(trigger(links=[{"text": "no href"}]), "'href' is a required property", id="link-without-href"),
        pytest.param(_big_event(), "over 512 KB", id="request-over-512KB"),
    ],
)
def test_invalid_events_are_rejected(pd: FakePagerDuty, http: httpx2.Client, event: dict[str, Any], error: str) -> None:
    response = http.post("/v2/enqueue", json=event)

    assert response.status_code == 400, response.text
    assert response.json()["status"] == "invalid event"
    assert any(error in message for message in response.json()["errors"]), response.json()["errors"]
    assert pd.events == [] and len(pd.invalid_requests) == 1


def test_unparseable_body_gets_the_documented_error(pd: FakePagerDuty, http: httpx2.Client) -> None:
    response = http.post("/v2/enqueue", content=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json() == {
        "status": "Unrecognized object",
        "message": "Event object format is unrecognized",
        "errors": ["JSON parse error"],
    }
    assert len(pd.invalid_requests) == 1


def test_limits_are_inclusive(pd: FakePagerDuty, http: httpx2.Client) -> None:
    event = trigger(dedup_key="k" * 255, payload={"summary": "s" * 1024, "source": "h", "severity": "error"})

    assert http.post("/v2/enqueue", json=event).status_code == 202
    pd.assert_no_invalid_requests()


def test_change_events(pd: FakePagerDuty, http: httpx2.Client) -> None:
    ok = http.post("/v2/change/enqueue", json={"routing_key": ROUTING_KEY, "payload": {"summary": "deploy v2"}})
    bad = http.post("/v2/change/enqueue", json={"routing_key": ROUTING_KEY, "payload": {"source": "ci"}})

    assert ok.status_code == 202 and bad.status_code == 400
    assert [e.summary for e in pd.change_events] == ["deploy v2"]
    assert pd.events == [] and pd.incidents == []  # change events open nothing


def test_unknown_routing_key_is_refused_when_keys_are_configured() -> None:
    with FakePagerDuty(routing_keys={"a" * 32: "PSVC001"}) as fake, fake.http_client() as client:
        assert client.post("/v2/enqueue", json=trigger(routing_key="a" * 32)).status_code == 202
        refused = client.post("/v2/enqueue", json=trigger(routing_key="b" * 32))

    assert refused.status_code == 400 and refused.json()["errors"] == ["Invalid routing key"]


# ---------------------------------------------------------------------------------------------------------------
# Events API v2: de-duplication state
# ---------------------------------------------------------------------------------------------------------------


def test_dedup_semantics(pd: FakePagerDuty, http: httpx2.Client) -> None:
    def send(event: dict[str, Any]) -> None:
        assert http.post("/v2/enqueue", json=event).status_code == 202

    send(trigger("k"))
    send(trigger("k"))  # de-duplicated into the open alert
    assert len(pd.alerts) == 1 and len(pd.incidents) == 1
    assert len(pd.triggers_for("k")) == 2

    send(action("acknowledge", "k"))
    assert pd.alert("k").status == "acknowledged"  # type: ignore[union-attr]
    assert pd.incidents_for("k")[0].status == "acknowledged"

    send(action("resolve", "k", routing_key="f" * 32))  # another routing key: dropped
    send(action("resolve", "k"))
    assert pd.open_alerts() == [] and pd.open_incidents() == []

    send(action("resolve", "k"))  # resolved key: dropped
    send(action("acknowledge", "never-seen"))  # unknown key: dropped
    assert [(e.event_action, e.dedup_key) for e in pd.dropped_events] == [
        ("resolve", "k"),
        ("resolve", "k"),
        ("acknowledge", "never-seen"),
    ]

    send(trigger("k"))  # after resolution the same key opens a new alert and a new incident
    assert len(pd.alerts) == 2 and [i.status for i in pd.incidents_for("k")] == ["resolved", "triggered"]
    assert [e.outcome for e in pd.events].count("ingested") == 5
    pd.assert_no_invalid_requests()


def test_trigger_without_dedup_key_always_opens_a_new_alert(pd: FakePagerDuty, http: httpx2.Client) -> None:
    keys = [http.post("/v2/enqueue", json=trigger(None)).json()["dedup_key"] for _ in range(2)]

    assert keys[0] != keys[1] and all(len(k) == 32 for k in keys)
    assert len(pd.open_alerts()) == 2


def test_events_incident_is_visible_through_rest(pd: FakePagerDuty, http: httpx2.Client, rest: Any) -> None:
    http.post("/v2/enqueue", json=trigger("dd:42"))

    [incident] = rest.jget("/incidents", params={"incident_key": "dd:42"})["incidents"]
    assert (incident["title"], incident["status"], incident["urgency"]) == ("CPU > 90% on web-1", "triggered", "high")

    # Resolving through REST resolves the alert too, so a later resolve event is dropped.
    rest.rput(f"/incidents/{incident['id']}", json={"type": "incident_reference", "status": "resolved"})
    assert pd.open_alerts() == []
    http.post("/v2/enqueue", json=action("resolve", "dd:42"))
    assert pd.events[-1].outcome == "dropped"
    pd.assert_no_invalid_requests()


def test_seeded_incidents_are_the_state_triggers_would_leave(pd: FakePagerDuty, http: httpx2.Client,
                                                             rest: Any) -> None:
    seeded = pd.seed_open_incidents(["seed:1", "seed:2"], summary="week-old incident")

    assert [i.incident_key for i in seeded] == ["seed:1", "seed:2"] and pd.events == [] and pd.requests == []
    [found] = rest.jget("/incidents", params={"incident_key": "seed:2", "statuses[]": ["triggered"]})["incidents"]
    assert (found["id"], found["title"], found["status"]) == (seeded[1].id, "week-old incident", "triggered")
    # A trigger de-duplicates into the seeded alert; a resolve closes it, as for an alert a trigger opened.
    http.post("/v2/enqueue", json=trigger("seed:1"))
    http.post("/v2/enqueue", json=action("resolve", "seed:1"))
    assert len(pd.incidents_for("seed:1")) == 1 and pd.incident(seeded[0].id).status == "resolved"
    with pytest.raises(ValueError, match="open already"):
        pd.seed_open_incidents(["seed:2"])
    pd.assert_no_invalid_requests()


# ---------------------------------------------------------------------------------------------------------------
# Fault injection and rate limits
# ---------------------------------------------------------------------------------------------------------------


def test_latency_answers_every_matching_request_late_side_by_side(pd: FakePagerDuty) -> None:
    pd.latency(0.5, api="rest")

    def timed(request: Callable[[httpx2.Client], httpx2.Response]) -> float:
        with pd.http_client() as client:
            started = time.monotonic()
            assert request(client).status_code < 300
            return time.monotonic() - started

    def rest_call(client: httpx2.Client) -> httpx2.Response:
        return client.get("/priorities", headers=REST_HEADERS)

    assert timed(rest_call) >= 0.5
    assert timed(lambda c: c.post("/v2/enqueue", json=trigger())) < 0.5  # the other API is not slowed
    # Four at once take one round trip, not four: the fake waits outside its lock, as a network would.
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        list(pool.map(lambda _: timed(rest_call), range(4)))
        assert time.monotonic() - started < 1.5
    assert len(pd.requests_to("/priorities")) == 5 and pd.pending_faults == 0
    pd.latency(0, api="rest")
    assert timed(rest_call) < 0.5


def test_delay_makes_the_client_time_out_and_nothing_is_ingested(pd: FakePagerDuty) -> None:
    pd.delay(5.0, api="events")

    with pd.http_client(timeout=0.3) as client:
        with pytest.raises(httpx2.TimeoutException):
            client.post("/v2/enqueue", json=trigger())
        # The fault is used up: the retry goes through.
        assert client.post("/v2/enqueue", json=trigger()).status_code == 202

    assert [r.outcome for r in pd.requests] == ["fault:delay", "accepted"]
    assert len(pd.events) == 1


def test_delay_then_process_ingests_although_the_client_gave_up(pd: FakePagerDuty) -> None:
    pd.delay(0.5, then_process=True)

    with pd.http_client(timeout=0.1) as client, pytest.raises(httpx2.TimeoutException):
        client.post("/v2/enqueue", json=trigger("late"))

    # The server finishes the request after the client left.
    assert pd.wait_for(lambda: pd.events, timeout=5.0)
    assert [e.dedup_key for e in pd.events] == ["late"]


def test_drop_closes_the_connection_without_an_answer(pd: FakePagerDuty, http: httpx2.Client) -> None:
    pd.drop()

    with pytest.raises(httpx2.TransportError):
        http.post("/v2/enqueue", json=trigger())

    assert pd.events == [] and pd.requests[0].status is None and pd.requests[0].outcome == "fault:drop"
    assert http.post("/v2/enqueue", json=trigger()).status_code == 202


def test_503_twice_then_success_with_the_real_events_client(pd: FakePagerDuty) -> None:
    pd.fail(503, times=2)

    with pd.events_client() as client:
        assert client.trigger("CPU high", "web-1", dedup_key="k") == "k"

    assert [r.status for r in pd.requests] == [503, 503, 202]
    assert len(pd.triggers_for("k")) == 1  # faulted attempts were not ingested
    assert pd.pending_faults == 0


def test_events_429_has_no_body_and_rest_429_has_the_documented_one(pd: FakePagerDuty, http: httpx2.Client) -> None:
    pd.fail(429, api="events")
    pd.fail(429, api="rest")

    events_answer = http.post("/v2/enqueue", json=trigger())
    rest_answer = http.get("/incidents", headers=REST_HEADERS)

    assert events_answer.status_code == 429 and events_answer.content == b""
    assert rest_answer.status_code == 429
    assert rest_answer.json() == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(rest_answer.headers)
    assert pd.events == []


def test_faults_can_target_one_api_or_path(pd: FakePagerDuty, http: httpx2.Client) -> None:
    pd.fail(500, api="rest")
    pd.fail(502, path="/v2/change/")

    assert http.post("/v2/enqueue", json=trigger()).status_code == 202
    assert (
        http.post("/v2/change/enqueue", json={"routing_key": ROUTING_KEY, "payload": {"summary": "x"}}).status_code
        == 502
    )
    assert http.get("/priorities", headers=REST_HEADERS).status_code == 500
    assert pd.pending_faults == 0


def test_events_rate_limit_per_routing_key_over_a_sliding_minute() -> None:
    clock = ManualClock()
    with FakePagerDuty(events_rate_limit_per_minute=3, clock=clock) as fake, fake.http_client() as client:
        statuses = [client.post("/v2/enqueue", json=trigger(f"k{n}")).status_code for n in range(4)]
        other_key = client.post("/v2/enqueue", json=trigger("other", routing_key="f" * 32)).status_code
        clock.advance(59.0)
        still_limited = client.post("/v2/enqueue", json=trigger("k5")).status_code
        clock.advance(1.0)
        after_window = client.post("/v2/enqueue", json=trigger("k6")).status_code

    assert statuses == [202, 202, 202, 429]
    assert (other_key, still_limited, after_window) == (202, 429, 202)
    assert [e.dedup_key for e in fake.events] == ["k0", "k1", "k2", "other", "k6"]  # 429s were not ingested


def test_rest_rate_limit_answers_429_with_headers() -> None:
    with FakePagerDuty(rest_rate_limit_per_minute=2, clock=ManualClock()) as fake, fake.http_client() as client:
        answers = [client.get("/priorities", headers=REST_HEADERS) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit-remaining"] == "1"
    assert answers[2].json()["error"]["code"] == 2020 and int(answers[2].headers["ratelimit-reset"]) > 0


# ---------------------------------------------------------------------------------------------------------------
# REST API v2
# ---------------------------------------------------------------------------------------------------------------


def test_create_incident_and_duplicate_open_incident_key(pd: FakePagerDuty, rest: Any) -> None:
    created = rest.rpost("/incidents", json=new_incident(incident_key="disk:web-1", urgency="low"))

    assert (created["status"], created["urgency"], created["incident_key"]) == ("triggered", "low", "disk:web-1")
    fetched = rest.rget(f"/incidents/{created['id']}")
    assert fetched["body"] == {"type": "incident_body", "details": "A disk is getting full."}

    with pytest.raises(pagerduty.HttpError) as duplicate:
        rest.rpost("/incidents", json=new_incident(incident_key="disk:web-1"))
    assert duplicate.value.response is not None and duplicate.value.response.status_code == 400

    rest.rput(f"/incidents/{created['id']}", json={"type": "incident_reference", "status": "resolved"})
    assert rest.rpost("/incidents", json=new_incident(incident_key="disk:web-1"))["id"] != created["id"]
    pd.assert_no_invalid_requests()  # a duplicate key is a state conflict, not a malformed request


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        pytest.param({"From": None}, None, 400, "From header", id="no-from"),
        pytest.param({"From": "stranger@example.com"}, None, 400, "not the email of a user", id="unknown-from"),
        pytest.param({"Accept": "application/json"}, None, 400, "Accept header", id="unversioned-accept"),
        pytest.param({"Authorization": None}, None, 401, "Authorization", id="no-auth"),
        pytest.param(
            {},
            {"incident": {**new_incident(), "body": {"type": "incident_body", "details": {"a": 1}}}},
            400,
            "incident.body.details",
            id="object-body-details",
        ),
        pytest.param(
            {},
            {"incident": {**new_incident(), "priority": {"id": "PPRI001"}}},
            400,
            "incident.priority: 'type' is a required property",
            id="priority-without-type",
        ),
        pytest.param(
            {},
            {"incident": {"type": "incident", "title": "t"}},
            400,
            "'service' is a required property",
            id="no-service",
        ),
    ],
)
def test_invalid_rest_requests(
    pd: FakePagerDuty, http: httpx2.Client, headers: dict[str, str | None], body: Any, status: int, error: str
) -> None:
    sent = {k: v for k, v in {**REST_HEADERS, **headers}.items() if v is not None}

    response = http.post("/incidents", json=body or {"incident": new_incident()}, headers=sent)

    assert response.status_code == status, response.text
    [rejected] = pd.invalid_requests
    assert any(error in e for e in rejected.errors), rejected.errors
    assert pd.incidents == []


def test_get_requests_need_no_content_type(pd: FakePagerDuty, http: httpx2.Client) -> None:
    assert http.get("/incidents", headers=REST_HEADERS).status_code == 200
    pd.assert_no_invalid_requests()


def test_unknown_endpoint_is_loud(pd: FakePagerDuty, http: httpx2.Client) -> None:
    assert http.get("/schedules", headers=REST_HEADERS).status_code == 404
    assert len(pd.invalid_requests) == 1


def test_notes_and_log_entries(pd: FakePagerDuty, rest: Any) -> None:
    incident = rest.rpost("/incidents", json=new_incident())
    path = f"/incidents/{incident['id']}"

    note = rest.rpost(f"{path}/notes", json={"content": "Firefighters are on the scene."})
    rest.rput(path, json={"type": "incident_reference", "status": "acknowledged"})
    rest.rput(path, json={"type": "incident_reference", "status": "resolved", "resolution": "disk cleaned"})

    assert note["user"]["id"] == "PUSER01" and note["content"] == "Firefighters are on the scene."
    assert [n["content"] for n in rest.rget(f"{path}/notes")] == ["Firefighters are on the scene."]
    kinds = [entry["type"] for entry in rest.iter_all(f"{path}/log_entries")]
    assert kinds == ["trigger_log_entry", "annotate_log_entry", "acknowledge_log_entry", "resolve_log_entry"]
    assert [n["note"] for n in rest.iter_incident_notes(incident["id"])] == ["Firefighters are on the scene."]
    pd.assert_no_invalid_requests()


def test_responder_requests(pd: FakePagerDuty, rest: Any) -> None:
    incident = rest.rpost("/incidents", json=new_incident())
    request_body = {
        "requester_id": "PUSER01",
        "message": "Please join the bridge",
        "responder_request_targets": [
            {"responder_request_target": {"id": "PUSER02", "type": "user_reference"}},
            {"responder_request_target": {"id": "PEP0002", "type": "escalation_policy_reference"}},
        ],
    }

    answer = rest.rpost(f"/incidents/{incident['id']}/responder_requests", json=request_body)

    assert answer["requester"]["id"] == "PUSER01" and answer["message"] == "Please join the bridge"
    targets = [t["responder_request_target"] for t in answer["responder_request_targets"]]
    assert [(t["type"], t["id"]) for t in targets] == [("user", "PUSER02"), ("escalation_policy", "PEP0002")]
    assert [r["user"]["id"] for t in targets for r in t["incidents_responders"]] == ["PUSER02", "PUSER03"]

    pd.answer_responder_request(incident["id"], "PUSER02", accepted=True)
    pd.answer_responder_request(incident["id"], "PUSER03", accepted=False)
    fetched = rest.rget(f"/incidents/{incident['id']}")
    states = [(r["user"]["id"], r["state"]) for r in fetched["incidents_responders"]]
    assert states == [("PUSER02", "joined"), ("PUSER03", "declined")]
    assert [a["assignee"]["id"] for a in fetched["assignments"]] == ["PUSER02"]
    kinds = [e["type"] for e in rest.iter_all(f"/incidents/{incident['id']}/log_entries")]
    assert kinds == ["trigger_log_entry", "notify_log_entry", "assign_log_entry", "notify_log_entry"]
    pd.assert_no_invalid_requests()


def test_responder_request_flat_targets_and_unknown_users_are_invalid(pd: FakePagerDuty, rest: Any) -> None:
    incident = rest.rpost("/incidents", json=new_incident())
    url = f"/incidents/{incident['id']}/responder_requests"
    flat = {
        "requester_id": "PUSER01",
        "message": "m",
        "responder_request_targets": [{"id": "PUSER02", "type": "user_reference"}],
    }
    unknown = {
        **flat,
        "responder_request_targets": [{"responder_request_target": {"id": "PNOBODY", "type": "user_reference"}}],
    }

    assert rest.post(url, json=flat).status_code == 400
    assert rest.post(url, json=unknown).status_code == 400
    assert len(pd.invalid_requests) == 2


def test_missing_abilities_answer_402() -> None:
    with FakePagerDuty(abilities=set()) as fake, fake.rest_client() as client:
        incident = client.rpost("/incidents", json=new_incident())
        responders = client.post(
            f"/incidents/{incident['id']}/responder_requests",
            json={
                "requester_id": "PUSER01",
                "message": "m",
                "responder_request_targets": [
                    {"responder_request_target": {"id": "PEP0002", "type": "escalation_policy_reference"}}
                ],
            },
        )
        priorities = client.get("/priorities")
        status_update = client.post(f"/incidents/{incident['id']}/status_updates", json={"message": "m"})
        past = client.get(f"/incidents/{incident['id']}/past_incidents")
        has_teams = client.account_has_ability("teams")

    missing = {"error": {"message": "Account does not have the abilities to perform the action", "code": 2014}}
    assert (responders.status_code, responders.json()) == (402, missing)
    assert (priorities.status_code, priorities.json()) == (402, missing)
    assert (status_update.status_code, status_update.json()) == (402, missing)
    assert past.status_code == 403  # the spec lists 403, not 402, for past/related incidents
    assert has_teams is False
    fake.assert_no_invalid_requests()


def test_priorities_and_update_by_priority_name(pd: FakePagerDuty, rest: Any) -> None:
    names = [p["name"] for p in rest.rget("/priorities")]
    incident = rest.rpost("/incidents", json=new_incident())

    updated = rest.rput(
        f"/incidents/{incident['id']}",
        json={"type": "incident_reference", "priority": "P2", "escalation_level": 2, "urgency": "low"},
    )

    assert names == ["P1", "P2", "P3", "P4", "P5"]
    assert (updated["priority"]["id"], updated["escalation_level"], updated["urgency"]) == ("PPRI002", 2, "low")
    bad = rest.put(
        f"/incidents/{incident['id']}",
        json={"incident": {"type": "incident_reference", "priority": {"id": "PNOPE", "type": "priority_reference"}}},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 1020


def test_bulk_update(pd: FakePagerDuty, rest: Any) -> None:
    ids = [rest.rpost("/incidents", json=new_incident(f"i{n}"))["id"] for n in range(2)]

    answer = rest.jput(
        "/incidents",
        json={"incidents": [{"id": i, "type": "incident_reference", "status": "acknowledged"} for i in ids]},
    )

    assert [i["status"] for i in answer["incidents"]] == ["acknowledged", "acknowledged"]
    assert [i.acknowledger_ids for i in pd.incidents] == [["PUSER01"], ["PUSER01"]]


def test_list_filters_and_include(pd: FakePagerDuty, http: httpx2.Client, rest: Any) -> None:
    for n in range(3):
        http.post("/v2/enqueue", json=trigger(f"k{n}"))
    rest.rput(f"/incidents/{pd.incidents_for('k1')[0].id}", json={"type": "incident_reference", "status": "resolved"})

    open_ones = rest.jget("/incidents", params={"statuses": ["triggered", "acknowledged"], "include": ["services"]})
    resolved = rest.jget("/incidents", params={"statuses[]": "resolved", "service_ids[]": "PSVC001"})
    none = rest.jget("/incidents", params={"service_ids[]": "PSVC999"})
    newest_first = rest.jget("/incidents", params={"sort_by": "created_at:desc"})
    bogus = rest.get("/incidents", params={"statuses[]": "open"})

    assert [i["incident_key"] for i in open_ones["incidents"]] == ["k0", "k2"]
    assert (
        open_ones["incidents"][0]["service"]["type"] == "service"
        and "escalation_policy" in open_ones["incidents"][0]["service"]
    )
    assert [i["incident_key"] for i in resolved["incidents"]] == ["k1"]
    assert none["incidents"] == []
    assert [i["incident_number"] for i in newest_first["incidents"]] == [3, 2, 1]
    assert bogus.status_code == 400 and "statuses[]" in bogus.json()["error"]["errors"][0]


def test_pagination_and_the_10000_rule() -> None:
    clock = ManualClock()
    with FakePagerDuty(clock=clock) as fake, fake.rest_client() as client:
        for n in range(30):
            clock.advance(1)
            client.rpost("/incidents", json=new_incident(f"incident {n}"))
        page = client.jget("/incidents", params={"limit": 10, "offset": 20, "total": "true"})
        capped = client.jget("/incidents", params={"limit": 500})
        everything = list(client.iter_all("/incidents", page_size=7))
        at_limit = client.get("/incidents", params={"limit": 100, "offset": 9900})
        over_limit = client.get("/incidents", params={"limit": 100, "offset": 9901})

    assert (len(page["incidents"]), page["more"], page["total"], page["offset"]) == (10, False, 30, 20)
    assert capped["limit"] == 100 and capped["total"] is None
    assert len(everything) == 30 and len({i["id"] for i in everything}) == 30
    assert at_limit.status_code == 200 and at_limit.json()["incidents"] == []
    assert over_limit.status_code == 400 and over_limit.json()["error"]["code"] == 2001
    assert [r.path for r in fake.invalid_requests] == ["/incidents"]  # only the offset+limit > 10000 one


def test_directory_lookups(rest: Any) -> None:
    assert rest.find("users", "alice@example.com", attribute="email")["id"] == "PUSER02"
    assert rest.find("escalation_policies", "database experts")["id"] == "PEP0002"
    assert rest.find("services", "Default Service")["escalation_policy"]["id"] == "PEP0001"
    assert rest.rget("/users/PUSER03")["email"] == "bob@example.com"


def test_past_and_related_incidents(pd: FakePagerDuty, rest: Any) -> None:
    first = rest.rpost("/incidents", json=new_incident("first"))
    second = rest.rpost("/incidents", json=new_incident("second"))
    related = [
        {
            "incident": {"id": first["id"], "title": "first"},
            "relationships": [
                {"type": "machine_learning_inferred", "metadata": {"grouping_classification": "similar_contents"}}
            ],
        }
    ]
    pd.set_related_incidents(second["id"], related)

    past = rest.jget(f"/incidents/{second['id']}/past_incidents", params={"total": "true"})
    answer = rest.jget(f"/incidents/{second['id']}/related_incidents")

    assert [p["incident"]["id"] for p in past["past_incidents"]] == [first["id"]]
    assert (past["total"], past["limit"]) == (1, 5)
    assert answer["related_incidents"] == related
    assert rest.get(f"/incidents/{second['id']}/past_incidents", params={"limit": 1000}).status_code == 400


def test_exported_fixture_and_plain_http_mode(fake_pagerduty: FakePagerDuty) -> None:
    assert fake_pagerduty.url.startswith("https://127.0.0.1:")
    with FakePagerDuty(tls=False) as plain, httpx2.Client(base_url=plain.url) as client:
        assert plain.url.startswith("http://")
        assert client.post("/v2/enqueue", json=trigger()).status_code == 202


# ---------------------------------------------------------------------------------------------------------------
# Datadog
# ---------------------------------------------------------------------------------------------------------------

dd_api = pytest.importorskip("datadog_api_client")
from datadog_api_client import ApiClient, Configuration  # noqa: E402
from datadog_api_client.exceptions import ApiException  # noqa: E402
from datadog_api_client.v1.api.monitors_api import MonitorsApi  # noqa: E402
from datadog_api_client.v2.api.incidents_api import IncidentsApi  # noqa: E402
from datadog_api_client.v2.model.incident_search_sort_order import IncidentSearchSortOrder  # noqa: E402

unstable_warning = pytest.mark.filterwarnings("ignore:Using unstable operation:UserWarning")


@pytest.fixture
def dd() -> Iterator[FakeDatadog]:
    clock = ManualClock()
    with FakeDatadog(clock=clock) as fake:
        for title, severity, state, services in [
            ("Checkout errors", "SEV-1", "active", ["checkout"]),
            ("Slow search", "SEV-3", "stable", ["search"]),
            ("DB failover", "SEV-2", "resolved", ["db", "checkout"]),
        ]:
            clock.advance(60)
            fake.add_incident(
                title,
                severity=severity,
                state=state,
                services=services,
                customer_impacted=True,
                customer_impact_scope="checkout",
            )
        yield fake


@unstable_warning
def test_datadog_search_through_the_real_client(dd: FakeDatadog) -> None:
    with ApiClient(dd.client_configuration()) as api:
        answer = IncidentsApi(api).search_incidents(
            query="state:(active OR stable OR resolved) AND services:checkout",
            sort=IncidentSearchSortOrder("-created"),
            page_size=25,
        )

    assert str(answer.data.type) == "incidents_search_results"
    assert answer.data.attributes.total == 2
    items = [item.data for item in answer.data.attributes.incidents]
    assert [i.attributes.title for i in items] == ["DB failover", "Checkout errors"]  # newest first
    first = items[1].attributes
    assert (str(first.severity), first.state, first.customer_impacted) == ("SEV-1", "active", True)
    assert first.fields["services"].value == ["checkout"]
    assert first.created.tzinfo is not None
    assert answer.meta.pagination.next_offset == 25
    assert dd.search_queries == ["state:(active OR stable OR resolved) AND services:checkout"]
    dd.assert_no_invalid_requests()


@unstable_warning
def test_datadog_search_pagination(dd: FakeDatadog) -> None:
    with ApiClient(dd.client_configuration()) as api:
        titles = [
            item.data.attributes.title
            for item in IncidentsApi(api).search_incidents_with_pagination(
                query="severity:(SEV-1 OR SEV-2 OR SEV-3)", sort=IncidentSearchSortOrder("created"), page_size=2
            )
        ]

    assert titles == ["Checkout errors", "Slow search", "DB failover"]
    assert [r.query.get("page[offset]", ["0"])[0] for r in dd.requests] == ["0", "2"]


@unstable_warning
def test_datadog_faults_and_errors(dd: FakeDatadog) -> None:
    dd.fail(503)
    with ApiClient(dd.client_configuration()) as api:
        with pytest.raises(ApiException) as failed:
            IncidentsApi(api).search_incidents(query="state:active")
        assert IncidentsApi(api).search_incidents(query="state:active").data.attributes.total == 1
        with pytest.raises(ApiException) as time_range:
            IncidentsApi(api).search_incidents(query="state:active AND from_ts:1700000000")

    assert failed.value.status == 503
    assert time_range.value.status == 400  # as the real API (datadog-api-client-python#1695)


def test_datadog_auth(dd: FakeDatadog) -> None:
    with dd.http_client() as client:
        missing = client.get(
            "/api/v2/incidents/search", params={"query": "state:active"}, headers={"DD-API-KEY": dd.api_key}
        )
        wrong = client.get(
            "/api/v2/incidents/search",
            params={"query": "state:active"},
            headers={"DD-API-KEY": dd.api_key, "DD-APPLICATION-KEY": "nope"},
        )

    assert (missing.status_code, wrong.status_code) == (401, 403)
    assert json.loads(wrong.content) == {"errors": ["Forbidden"]}
    assert len(dd.invalid_requests) == 1  # a missing header is a client bug; a wrong key is only refused


def test_datadog_monitor(fake_datadog: FakeDatadog) -> None:
    fake_datadog.add_monitor({"id": 1234, "name": "CPU on web", "tags": ["service:web"], "priority": 2})

    with ApiClient(fake_datadog.client_configuration()) as api:
        monitor = MonitorsApi(api).get_monitor(1234)
        with pytest.raises(ApiException) as missing:
            MonitorsApi(api).get_monitor(99)

    assert (monitor.id, monitor.name, monitor.priority, monitor.tags) == (1234, "CPU on web", 2, ["service:web"])
    assert missing.value.status == 404


@unstable_warning
def test_datadog_over_tls() -> None:
    with FakeDatadog(tls=True) as fake, ApiClient(fake.client_configuration()) as api:
        fake.add_incident("secure", severity="SEV-4")
        assert fake.url.startswith("https://")
        assert IncidentsApi(api).search_incidents(query="*").data.attributes.total == 1


def test_datadog_client_full_unstable_key_raises() -> None:
    """Pins a datadog-api-client 2.62.0 trap: the documented `v2.`-prefixed key raises after storing the value.

    If this starts failing, the library fixed `_UnstableOperations.__setitem__`; the short key keeps working.
    """
    config = Configuration()
    with pytest.raises(KeyError):
        config.unstable_operations["v2.search_incidents"] = True
    assert config.unstable_operations["v2.search_incidents"] is True  # ...although the value was stored
    config.unstable_operations["search_incidents"] = True  # the form the fake's helper uses
