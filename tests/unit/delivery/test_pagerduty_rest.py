"""`bridge.delivery.pagerduty_rest` against the loopback `FakePagerDuty` (real HTTPS, schema-validated requests).

Every test ends with `pd.assert_no_invalid_requests()`: what we send must pass PagerDuty's published schema
(with the overrides of reference/pagerduty-openapi/README.md). Nothing sleeps for seconds: the library's single
429 retry sleeps ~10 ms here, timeouts are 0.3 s, and the limiter runs on a `ManualClock`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.pagerduty_rest import (
    MAX_NOTE_CHARS,
    MAX_NOTES_PER_INCIDENT,
    PagerDutyRest,
    ResponderOutcome,
    SlidingWindowLimiter,
    fit_note,
    route_test_title,
)
from bridge.errors import ConfigError, DeliveryError
from bridge.rules.model import Target
from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, FakePagerDuty, ManualClock

LOGGER = "bridge.delivery.pagerduty_rest"


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


def make_rest(pd: FakePagerDuty, *, token: str = API_KEY, pd_from: str = FROM_EMAIL, timeout: float = 5.0,
              clock: ManualClock | None = None, **kwargs: Any) -> PagerDutyRest:
    settings = Settings(api_token=Secret(token), api_url=pd.url, pd_from=pd_from, http_timeout_seconds=timeout)
    return PagerDutyRest(settings, verify=pd.ssl_context, clock=clock or ManualClock(),
                         rate_limit_retry_sleep=0.005, **kwargs)


@pytest.fixture
def rest(pd: FakePagerDuty) -> Iterator[PagerDutyRest]:
    client = make_rest(pd)
    yield client
    client.close()


def open_incident(pd: FakePagerDuty, dedup_key: str = "dd:1234", severity: str = "warning") -> str:
    """Trigger an event through the Events API (as the bridge does) and return the incident id it opened."""
    events = pd.events_client()
    events.trigger("CPU > 90% on web-1", "web-1", dedup_key=dedup_key, severity=severity)
    events.close()
    return pd.incidents_for(dedup_key)[-1].id


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# -- construction and identity ---------------------------------------------------------------------------------


def test_missing_token_or_from_is_a_config_error(pd: FakePagerDuty) -> None:
    with pytest.raises(ConfigError, match="PAGERDUTY_API_TOKEN"):
        make_rest(pd, token="")
    with pytest.raises(ConfigError, match="PAGERDUTY_FROM"):
        make_rest(pd, pd_from="")


def test_from_settings_accepts_a_ca_bundle_path(pd: FakePagerDuty) -> None:
    settings = Settings(api_token=Secret(API_KEY), api_url=pd.url, pd_from=FROM_EMAIL)
    assert pd.ca_file is not None
    with PagerDutyRest.from_settings(settings, verify=pd.ca_file) as rest:
        assert rest.requester_id() == "PUSER01"
    pd.assert_no_invalid_requests()


def test_requester_id_is_the_from_user_and_cached(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    assert rest.requester_id() == "PUSER01"
    assert rest.requester_id() == "PUSER01"
    assert len(pd.requests_to("/users", "GET")) == 1
    pd.assert_no_invalid_requests()


def test_requester_id_unknown_email_is_misconfigured(pd: FakePagerDuty) -> None:
    rest = make_rest(pd, pd_from="nobody@example.com")
    with pytest.raises(DeliveryError) as caught:
        rest.requester_id()
    assert (caught.value.reason, caught.value.retryable) == ("misconfigured", False)
    assert "nobody@example.com" in caught.value.message
    pd.assert_no_invalid_requests()


# -- incidents ---------------------------------------------------------------------------------------------------


def test_find_incident_after_an_events_api_trigger(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd, "dd:find-me")
    found = rest.find_incident("dd:find-me")
    assert found is not None and found["id"] == incident_id
    assert rest.find_incident("dd:unknown") is None
    events = pd.events_client()
    events.resolve("dd:find-me")
    events.close()
    assert rest.find_incident("dd:find-me") is None
    resolved = rest.find_incident("dd:find-me", include_resolved=True)
    assert resolved is not None and resolved["id"] == incident_id and resolved["status"] == "resolved"
    # A new trigger after the resolve opens a new incident: the open one wins over the older resolved one.
    newer = open_incident(pd, "dd:find-me")
    again = rest.find_incident("dd:find-me", include_resolved=True)
    assert again is not None and again["id"] == newer != incident_id
    query = pd.requests_to("/incidents", "GET")[0].query
    assert query["incident_key"] == ["dd:find-me"] and query["date_range"] == ["all"]
    pd.assert_no_invalid_requests()


def test_get_incident_unknown_is_not_found(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    with pytest.raises(DeliveryError) as caught:
        rest.get_incident("PNOPE99")
    assert (caught.value.reason, caught.value.retryable, caught.value.status) == ("not_found", False, 404)
    pd.assert_no_invalid_requests()


# -- priority and urgency ----------------------------------------------------------------------------------------


def test_priority_mapping_reads_priorities_once(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    assert rest.priority_for("P0") == "PPRI001"  # our P0 is the account's "P1" (PagerDuty names start at P1)
    assert rest.priority_for("p1") == "PPRI002"
    assert rest.priority_for("P3") == "PPRI004"
    assert rest.priority_for("P0", {"P0": "P5"}) == "PPRI005"
    assert rest.priority_for("P2", {"P0": "P5"}) == "PPRI003"  # the defaults fill what `names` leaves out
    assert rest.priority_for("P3", {"P3": ""}) is None  # an empty name: no priority for P3
    assert rest.priority_for("P1", {}) == "PPRI002"  # `{}` (no `priority_names` in the rules) = defaults
    assert rest.priority_for("P9") is None  # not a severity of ours
    assert len(pd.requests_to("/priorities")) == 1
    pd.assert_no_invalid_requests()


def test_unknown_priority_name_warns_once(pd: FakePagerDuty, rest: PagerDutyRest,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    assert rest.priority_for("P0", {"P0": "SEV-1"}) is None
    assert rest.priority_for("P0", {"P0": "SEV-1"}) is None
    assert len(warnings_of(caplog)) == 1 and "SEV-1" in warnings_of(caplog)[0]
    pd.assert_no_invalid_requests()


def test_account_without_priorities_gets_none_and_one_warning(pd: FakePagerDuty, rest: PagerDutyRest,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    pd.abilities.discard("priorities")
    caplog.set_level(logging.WARNING, LOGGER)
    assert rest.priority_for("P0") is None
    assert rest.priority_for("P1") is None
    assert len(pd.requests_to("/priorities")) == 1  # the 402 is remembered
    assert len(warnings_of(caplog)) == 1 and "priorities" in warnings_of(caplog)[0]
    assert "priorities" in rest.abilities.all_missing
    pd.assert_no_invalid_requests()


def test_set_priority_and_urgency_is_idempotent(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd, severity="warning")  # warning -> low urgency
    assert pd.incident(incident_id).urgency == "low"
    priority = rest.priority_for("P0")
    assert rest.set_priority_and_urgency(incident_id, priority, "high") is True
    assert (pd.incident(incident_id).priority_id, pd.incident(incident_id).urgency) == ("PPRI001", "high")
    puts = pd.requests_to(f"/incidents/{incident_id}", "PUT")
    assert puts[0].json() == {"incident": {"type": "incident",
                                           "priority": {"id": "PPRI001", "type": "priority_reference"},
                                           "urgency": "high"}}
    # The retry of the same job: the incident already has both, so no PUT.
    assert rest.set_priority_and_urgency(incident_id, priority, "high") is False
    assert len(pd.requests_to(f"/incidents/{incident_id}", "PUT")) == 1
    current = rest.current_priority_and_urgency(rest.get_incident(incident_id))
    assert current == ("PPRI001", "high")
    # Only what differs is sent.
    assert rest.set_priority_and_urgency(incident_id, "PPRI002", None) is True
    assert pd.requests_to(f"/incidents/{incident_id}", "PUT")[-1].json() == {
        "incident": {"type": "incident", "priority": {"id": "PPRI002", "type": "priority_reference"}}}
    pd.assert_no_invalid_requests()


def test_set_priority_without_priorities_ability_still_sets_urgency(pd: FakePagerDuty, rest: PagerDutyRest,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    incident_id = open_incident(pd, severity="info")
    pd.abilities.discard("priorities")
    caplog.set_level(logging.WARNING, LOGGER)
    assert rest.set_priority_and_urgency(incident_id, "PPRI001", "high") is True
    assert pd.incident(incident_id).urgency == "high" and pd.incident(incident_id).priority_id is None
    assert len(warnings_of(caplog)) == 1
    assert rest.set_priority_and_urgency(incident_id, "PPRI001", "high") is False  # remembered: no 402 again
    assert len(pd.requests_to(f"/incidents/{incident_id}", "PUT")) == 2
    pd.assert_no_invalid_requests()


# -- targets -----------------------------------------------------------------------------------------------------


def test_resolve_target_ids_names_and_emails(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    assert rest.resolve_target(Target("escalation_policy", "PEP0002")) == ("escalation_policy_reference", "PEP0002")
    assert rest.resolve_target(Target("user", "PUSER03")) == ("user_reference", "PUSER03")
    assert pd.requests_to("/escalation_policies") == [] and pd.requests_to("/users") == []
    assert rest.resolve_target(Target("escalation_policy", "database experts")) == (
        "escalation_policy_reference", "PEP0002")
    assert rest.resolve_target(Target("user", "Alice Oncall")) == ("user_reference", "PUSER02")
    assert rest.resolve_target(Target("user", "BOB@example.com")) == ("user_reference", "PUSER03")
    assert rest.resolve_target(Target("escalation_policy", "Database Experts")) == (
        "escalation_policy_reference", "PEP0002")  # cached
    assert len(pd.requests_to("/escalation_policies")) == 1
    pd.assert_no_invalid_requests()


def test_resolve_target_unknown_name_is_misconfigured(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    with pytest.raises(DeliveryError) as caught:
        rest.resolve_target(Target("escalation_policy", "Platform on-call"), role="Infrastructure Lead")
    assert (caught.value.reason, caught.value.retryable) == ("misconfigured", False)
    assert "Platform on-call" in caught.value.message and "Infrastructure Lead" in caught.value.message
    with pytest.raises(DeliveryError) as partial:
        rest.resolve_target(Target("user", "Alice"))  # a substring match is not an exact match
    assert partial.value.reason == "misconfigured"
    pd.assert_no_invalid_requests()


# -- responders --------------------------------------------------------------------------------------------------


def test_request_responders_wrapped_form_and_idempotent(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    targets = [Target("user", "Alice Oncall"), Target("escalation_policy", "Database Experts")]
    outcome = rest.request_responders(incident_id, targets, "IC needed: join the bridge")
    assert outcome == ResponderOutcome(
        "requested", (("user_reference", "PUSER02"), ("escalation_policy_reference", "PEP0002")), ())
    posts = pd.requests_to(f"/incidents/{incident_id}/responder_requests", "POST")
    assert posts[0].json() == {
        "requester_id": "PUSER01",
        "message": "IC needed: join the bridge",
        "responder_request_targets": [
            {"responder_request_target": {"id": "PUSER02", "type": "user_reference"}},
            {"responder_request_target": {"id": "PEP0002", "type": "escalation_policy_reference"}},
        ],
    }
    # The job's retry sends nothing new.
    again = rest.request_responders(incident_id, targets, "IC needed: join the bridge")
    assert again.status == "already_requested" and len(again.skipped) == 2
    # A new target (the backup) is requested alone.
    backup = rest.request_responders(incident_id, targets + [Target("user", "PUSER01")], "backup")
    assert backup.requested == (("user_reference", "PUSER01"),) and len(backup.skipped) == 2
    posts = pd.requests_to(f"/incidents/{incident_id}/responder_requests", "POST")
    assert len(posts) == 2
    assert posts[1].json()["responder_request_targets"] == [
        {"responder_request_target": {"id": "PUSER01", "type": "user_reference"}}]
    pd.assert_no_invalid_requests()


def test_request_responders_without_ability_degrades_with_one_warning(
        pd: FakePagerDuty, rest: PagerDutyRest, caplog: pytest.LogCaptureFixture) -> None:
    incident_id = open_incident(pd)
    pd.abilities.discard("coordinated_responding")
    caplog.set_level(logging.WARNING, LOGGER)
    targets = [("user_reference", "PUSER02")]
    assert rest.request_responders(incident_id, targets, "help").status == "unsupported"
    assert rest.request_responders(incident_id, targets, "help").status == "unsupported"
    assert len(pd.requests_to(f"/incidents/{incident_id}/responder_requests")) == 1
    assert len(warnings_of(caplog)) == 1 and "coordinated_responding" in warnings_of(caplog)[0]
    pd.assert_no_invalid_requests()


def test_responder_state_follows_the_answers(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    alice = Target("user", "Alice Oncall")
    experts = Target("escalation_policy", "Database Experts")  # pages PUSER03 in the fake
    assert rest.responder_state(incident_id, alice) == "absent"
    rest.request_responders(incident_id, [alice, experts], "join")
    assert rest.responder_state(incident_id, alice) == "pending"
    assert rest.responder_state(incident_id, experts) == "pending"
    assert rest.responder_state(incident_id, ("user_reference", "PUSER01")) == "absent"
    pd.answer_responder_request(incident_id, "PUSER02", accepted=True)
    pd.answer_responder_request(incident_id, "PUSER03", accepted=False)
    incident = rest.get_incident(incident_id)
    assert rest.responder_state(incident_id, alice, incident=incident) == "accepted"
    assert rest.responder_state(incident_id, experts, incident=incident) == "declined"
    pd.assert_no_invalid_requests()


def test_policy_with_nobody_on_call_stays_pending() -> None:
    policies = [{"id": "PEP0009", "name": "Empty Policy", "on_call_user_ids": []}]
    services = [{"id": "PSVC001", "name": "Default Service", "escalation_policy_id": "PEP0009"}]
    with FakePagerDuty(escalation_policies=policies, services=services) as pd:
        rest = make_rest(pd)
        incident_id = open_incident(pd)
        rest.request_responders(incident_id, [("escalation_policy_reference", "PEP0009")], "join")
        assert rest.responder_state(incident_id, ("escalation_policy_reference", "PEP0009")) == "pending"
        rest.close()
        pd.assert_no_invalid_requests()


# -- notes -------------------------------------------------------------------------------------------------------


def test_add_note_is_idempotent_by_marker(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    marker = "[incident-bridge:setup:42]"
    assert rest.add_note(incident_id, "Roles: IC = Alice", marker) is True
    assert rest.add_note(incident_id, "Roles: IC = Alice (retry)", marker) is False
    notes = pd.incident(incident_id).notes
    assert len(notes) == 1 and notes[0]["content"] == f"Roles: IC = Alice\n\n{marker}"
    post = pd.requests_to(f"/incidents/{incident_id}/notes", "POST")[0]
    assert post.header("From") == FROM_EMAIL
    assert rest.add_note(incident_id, f"{marker} other text", "[incident-bridge:related:42]") is True
    pd.assert_no_invalid_requests()


def test_long_note_is_trimmed_keeping_the_marker(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    marker = "[incident-bridge:related:7]"
    assert rest.add_note(incident_id, "x" * (MAX_NOTE_CHARS * 2), marker) is True
    content = pd.incident(incident_id).notes[0]["content"]
    assert len(content) == MAX_NOTE_CHARS and content.endswith(marker)
    assert rest.add_note(incident_id, "x" * (MAX_NOTE_CHARS * 2), marker) is False
    assert fit_note("short", marker) == f"short\n\n{marker}"
    assert fit_note(f"has {marker}", marker) == f"has {marker}"
    pd.assert_no_invalid_requests()


def test_note_cap_degrades_without_error(pd: FakePagerDuty, rest: PagerDutyRest,
                                         caplog: pytest.LogCaptureFixture) -> None:
    incident_id = open_incident(pd)
    # Script state directly: 2000 notes through HTTP would be slow (PagerDuty's cap, reference §2.4).
    pd.incident(incident_id).notes.extend(
        {"id": f"PN{n:05d}", "content": f"note {n}"} for n in range(MAX_NOTES_PER_INCIDENT))
    caplog.set_level(logging.WARNING, LOGGER)
    assert rest.add_note(incident_id, "one more", "[incident-bridge:setup:1]") is False
    assert pd.requests_to(f"/incidents/{incident_id}/notes", "POST") == []
    assert len(warnings_of(caplog)) == 1
    pd.assert_no_invalid_requests()


# -- status updates ----------------------------------------------------------------------------------------------


def test_status_update_is_posted_with_the_from_header(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    assert rest.create_status_update(incident_id, "Resolved: checkout is back") == "sent"
    [update] = pd.incident(incident_id).status_updates
    assert update["message"] == "Resolved: checkout is back" and update["sender"]["id"] == "PUSER01"
    [post] = pd.requests_to(f"/incidents/{incident_id}/status_updates", "POST")
    assert post.json() == {"message": "Resolved: checkout is back"} and post.header("From") == FROM_EMAIL
    pd.assert_no_invalid_requests()  # the body and the From header the spec requires


def test_status_update_without_ability_degrades_with_one_warning(
        pd: FakePagerDuty, rest: PagerDutyRest, caplog: pytest.LogCaptureFixture) -> None:
    incident_id = open_incident(pd)
    pd.abilities.discard("status_updates")
    caplog.set_level(logging.WARNING, LOGGER)
    assert rest.create_status_update(incident_id, "Resolved") == "unsupported"
    assert rest.create_status_update(incident_id, "Resolved") == "unsupported"  # never asked again
    assert len(pd.requests_to(f"/incidents/{incident_id}/status_updates")) == 1
    assert pd.incident(incident_id).status_updates == []
    assert len(warnings_of(caplog)) == 1 and "status_updates" in warnings_of(caplog)[0]
    pd.assert_no_invalid_requests()


def test_status_update_failures_are_retryable_delivery_errors(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    pd.fail(503, times=1, path=f"/incidents/{incident_id}/status_updates")
    with pytest.raises(DeliveryError) as failed:
        rest.create_status_update(incident_id, "Resolved")
    assert failed.value.retryable and failed.value.reason == "server_error"
    assert rest.create_status_update(incident_id, "Resolved") == "sent"
    with pytest.raises(DeliveryError) as missing:
        rest.create_status_update("PNOSUCH", "Resolved")
    assert (missing.value.retryable, missing.value.reason) == (False, "not_found")
    pd.assert_no_invalid_requests()


def test_status_updates_share_the_rest_rate_limit(pd: FakePagerDuty) -> None:
    clock = ManualClock()
    rest = make_rest(pd, clock=clock, requests_per_minute=1)
    incident_id = open_incident(pd)
    assert rest.create_status_update(incident_id, "first") == "sent"
    with pytest.raises(DeliveryError) as limited:
        rest.create_status_update(incident_id, "second")
    assert (limited.value.retryable, limited.value.reason) == (True, "rate_limited")
    clock.advance(60)
    assert rest.create_status_update(incident_id, "second") == "sent"
    rest.close()
    pd.assert_no_invalid_requests()


# -- failures ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "reason", "attempts"),
    [
        pytest.param(lambda pd: pd.fail(429, times=2, api="rest"), "rate_limited", 2, id="429-twice"),
        pytest.param(lambda pd: pd.fail(500, api="rest"), "server_error", 1, id="500"),
        pytest.param(lambda pd: pd.fail(503, api="rest"), "server_error", 1, id="503"),
        pytest.param(lambda pd: pd.fail(408, api="rest"), "timeout", 1, id="408"),
        pytest.param(lambda pd: pd.delay(3.0, api="rest"), "timeout", 1, id="timeout"),
        pytest.param(lambda pd: pd.drop(api="rest"), "network", 1, id="drop"),
    ],
)
def test_transient_failures_are_retryable(pd: FakePagerDuty, fault: Any, reason: str, attempts: int) -> None:
    rest = make_rest(pd, timeout=0.3)
    incident_id = open_incident(pd)
    fault(pd)
    with pytest.raises(DeliveryError) as caught:
        rest.get_incident(incident_id)
    assert (caught.value.reason, caught.value.retryable) == (reason, True)
    # One retry owner: at most the library's single 429 retry, never a network or 5xx retry.
    assert len(pd.requests_to(f"/incidents/{incident_id}", "GET")) == attempts
    assert rest.get_incident(incident_id)["id"] == incident_id  # the re-queued job succeeds
    pd.assert_no_invalid_requests()


def test_a_single_429_is_absorbed_by_one_short_retry(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    incident_id = open_incident(pd)
    pd.fail(429, times=1, api="rest")
    assert rest.get_incident(incident_id)["id"] == incident_id
    assert len(pd.requests_to(f"/incidents/{incident_id}", "GET")) == 2
    pd.assert_no_invalid_requests()


def test_rejections_are_not_retryable(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    pd.fail(400, api="rest", body={"error": {"message": "Invalid Input Provided", "code": 2001,
                                             "errors": ["bad thing"]}})
    with pytest.raises(DeliveryError) as caught:
        rest.requester_id()
    assert (caught.value.reason, caught.value.retryable, caught.value.status) == ("rejected", False, 400)
    assert "Invalid Input Provided" in caught.value.message and "bad thing" in caught.value.message
    pd.assert_no_invalid_requests()


def test_own_limiter_refuses_the_961st_request_in_a_minute(pd: FakePagerDuty) -> None:
    clock = ManualClock()
    rest = make_rest(pd, clock=clock)
    assert rest.requester_id() == "PUSER01"  # request 1 (a real one)
    for _ in range(959):  # requests 2..960, taken without HTTP to keep the test fast
        assert rest.limiter.try_acquire() is None
    clock.advance(59.0)
    sent = len(pd.requests)
    with pytest.raises(DeliveryError) as caught:
        rest.priority_for("P0")  # the 961st within the minute
    assert (caught.value.reason, caught.value.retryable) == ("rate_limited", True)
    assert len(pd.requests) == sent  # refused before anything left, no sleeping
    clock.advance(1.0)  # request 1 leaves the window
    assert rest.priority_for("P0") == "PPRI001"
    pd.assert_no_invalid_requests()


def test_limiter_counts_real_requests(pd: FakePagerDuty) -> None:
    clock = ManualClock()
    rest = make_rest(pd, clock=clock, requests_per_minute=3)
    incident_id = open_incident(pd)
    for _ in range(3):
        rest.get_incident(incident_id)
    with pytest.raises(DeliveryError, match="client-side limit of 3"):
        rest.get_incident(incident_id)
    clock.advance(60.0)
    rest.get_incident(incident_id)
    assert len(pd.requests_to(f"/incidents/{incident_id}", "GET")) == 4
    pd.assert_no_invalid_requests()


# Requests taken (seconds before now) -> slots free now and seconds until `wanted` slots are free, limit 4 a minute.
HEADROOM = [
    ((), 4, 4, 0.0),
    ((50.0,), 3, 3, 0.0),
    ((50.0,), 3, 4, 10.0),
    ((50.0, 20.0, 10.0, 5.0), 0, 1, 10.0),
    ((50.0, 20.0, 10.0, 5.0), 0, 2, 40.0),
    ((50.0, 20.0, 10.0, 5.0), 0, 9, 55.0),   # more than the limit: until all of it is free
    ((60.0, 20.0), 3, 4, 40.0),              # a request 60 s old has left the window
]


@pytest.mark.parametrize(("ages", "free", "wanted", "seconds"), HEADROOM,
                         ids=["idle", "one-taken", "all-wanted", "full-one", "full-two", "over-limit", "expired"])
def test_limiter_headroom(ages: tuple[float, ...], free: int, wanted: int, seconds: float) -> None:
    clock = ManualClock(start=0.0)
    limiter = SlidingWindowLimiter(4, 60.0, clock)
    for age in ages:  # oldest first
        clock.advance(100.0 - age - clock())
        assert limiter.try_acquire() is None
    clock.advance(100.0 - clock())
    assert (limiter.free(), limiter.seconds_until_free(wanted)) == (free, seconds)
    assert limiter.free() == free  # reading takes nothing


def test_api_token_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = "tok-DISTINCTIVE-s3cr3t-9f8e7d6c"
    caplog.set_level(logging.DEBUG)
    errors: list[DeliveryError] = []
    with FakePagerDuty(api_keys={"the-real-key"}) as pd:  # our token is unknown: 401
        rest = make_rest(pd, token=token, timeout=0.3)
        with pytest.raises(DeliveryError) as caught:
            rest.requester_id()
        assert (caught.value.reason, caught.value.retryable, caught.value.status) == ("misconfigured", False, 401)
        errors.append(caught.value)
        pd.assert_no_invalid_requests()
    with FakePagerDuty(api_keys={token}) as pd:
        rest = make_rest(pd, token=token, timeout=0.3)
        incident_id = open_incident(pd)
        for fault in (lambda: pd.fail(429, times=2, api="rest"), lambda: pd.fail(500, api="rest"),
                      lambda: pd.fail(403, api="rest"), lambda: pd.drop(api="rest"),
                      lambda: pd.delay(2.0, api="rest")):
            fault()
            with pytest.raises(DeliveryError) as failed:
                rest.get_incident(incident_id)
            errors.append(failed.value)
        # An error body that echoes the token is redacted too.
        pd.fail(400, api="rest", body={"error": {"message": f"bad key {token}", "code": 2001}})
        with pytest.raises(DeliveryError) as echoed:
            rest.get_incident(incident_id)
        errors.append(echoed.value)
        pd.assert_no_invalid_requests()
    assert {e.reason for e in errors} >= {"misconfigured", "rate_limited", "server_error", "network", "timeout",
                                          "rejected"}
    for error in errors:
        assert token not in str(error) and token not in repr(error) and token[-4:] not in error.message
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    for record in caplog.records:
        text = record.getMessage() + str(record.args) + (record.exc_text or "")
        assert token not in text


# -- route test incidents ----------------------------------------------------------------------------------------


def test_create_and_resolve_test_incident_for_a_user(pd: FakePagerDuty) -> None:
    rest = make_rest(pd, new_id=lambda: "fixed-id")
    created = rest.create_test_incident("PSVC001", Target("user", "Alice Oncall"),
                                        route_test_title("Incident Coordinator"), "Route check; no action needed.")
    incident = pd.incident(created["id"])
    assert incident.title == "[TEST] incident-bridge route test for role Incident Coordinator — no action needed"
    assert incident.urgency == "high" and incident.assignee_ids == ["PUSER02"]
    assert incident.incident_key == "incident-bridge:test:fixed-id"
    assert incident.body_details == "Route check; no action needed."
    body = pd.requests_to("/incidents", "POST")[0].json()["incident"]
    assert "escalation_policy" not in body
    assert rest.resolve_incident(created["id"])["status"] == "resolved"
    assert pd.incident(created["id"]).status == "resolved"
    pd.assert_no_invalid_requests()


def test_create_and_resolve_test_incident_for_an_escalation_policy(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    created = rest.create_test_incident("PSVC001", Target("escalation_policy", "PEP0002"), "route check", "body")
    incident = pd.incident(created["id"])
    assert incident.escalation_policy_id == "PEP0002" and incident.assignee_ids == []
    assert incident.title == "[TEST] route check"
    assert incident.incident_key is not None and incident.incident_key.startswith("incident-bridge:test:")
    body = pd.requests_to("/incidents", "POST")[0].json()["incident"]
    assert "assignments" not in body and body["body"] == {"type": "incident_body", "details": "body"}
    second = rest.create_test_incident("PSVC001", Target("escalation_policy", "PEP0002"), "route check", "body")
    assert second["id"] != created["id"]  # a unique key per test page
    rest.resolve_incident(created["id"])
    rest.resolve_incident(created["id"])  # idempotent
    assert pd.incident(created["id"]).status == "resolved"
    pd.assert_no_invalid_requests()


# -- reconciliation ----------------------------------------------------------------------------------------------


def test_list_incidents_pages_and_filters(pd: FakePagerDuty, rest: PagerDutyRest) -> None:
    ids = [open_incident(pd, f"dd:list:{n}") for n in range(3)]
    events = pd.events_client()
    events.resolve("dd:list:1")
    events.close()
    now = datetime.now(UTC)
    listed = [i["id"] for i in rest.list_incidents(now - timedelta(days=2), now + timedelta(minutes=1))]
    assert listed == ids
    open_only = [i["id"] for i in rest.list_incidents(now - timedelta(days=2), now + timedelta(minutes=1),
                                                      statuses=["triggered", "acknowledged"],
                                                      service_ids=["PSVC001"], window=timedelta(hours=12))]
    assert open_only == [ids[0], ids[2]]
    gets = pd.requests_to("/incidents", "GET")
    assert len(gets) == 1 + 5  # one window, then five 12-hour windows over two days and a minute
    assert gets[-1].query["statuses[]"] == ["triggered", "acknowledged"]
    assert all(int(g.query["limit"][0]) == 100 for g in gets)
    pd.assert_no_invalid_requests()
