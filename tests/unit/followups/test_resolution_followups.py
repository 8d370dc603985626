"""Closing the loop against the stateful PagerDuty fake: the resolution checklist note, the final stakeholder update
(a draft, or a status update when the rules opt in, with the 402 fallback), and reopening when a resolution does
not hold. Real store (SQLite), real rules engine with the shipped rules, real worker and REST client, PagerDuty
faked at the HTTP edge (every request checked against the published schema), a manual clock."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.pagerduty_rest import PagerDutyRest
from bridge.delivery.worker import DeliveryWorker
from bridge.followups import FollowUps
from bridge.model import Alert, AlertState, Link
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.engine import evaluate
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.e2e import POLICIES, USERS  # the account the shipped rules/roles.yaml names
from tests.support.fakes.pagerduty import API_KEY, FROM_EMAIL, ROUTING_KEY, FakePagerDuty, Incident
from tests.support.shared import copy_shipped_rules

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
PUBLIC_URL = "https://bridge.example.com"
HOLDERS = {"Infrastructure Lead": "escalation policy 'Platform Engineering'",
           "Technical Lead": "escalation policy 'Senior Developers'",
           "Communications Lead": "escalation policy 'Product Managers'",
           "Incident Coordinator": "escalation policy 'Engineering Managers'"}
REST_LOGGER = "bridge.delivery.pagerduty_rest"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES) as fake:
        yield fake
        fake.assert_no_invalid_requests()


class Bridge:
    """The worker side of a bridge (store, rules, follow-ups, worker) over the fake, on a manual clock."""

    def __init__(self, tmp_path: Path, pd: FakePagerDuty, *, settings: str = "", rest: bool = True,
                 requests_per_minute: int = 960) -> None:
        rules = copy_shipped_rules(tmp_path / "rules")
        if settings:
            (rules / "settings.yaml").write_text("version: 1\nsettings:\n" + settings, encoding="utf-8")
        self.holder = RulesetHolder(rules, None)
        self.holder.load()
        self.clock = Clock()
        self.store = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")
        self.rest = PagerDutyRest(Settings(api_token=Secret(API_KEY), api_url=pd.url, pd_from=FROM_EMAIL),
                                  verify=pd.ssl_context, clock=self.clock, rate_limit_retry_sleep=0.005,
                                  requests_per_minute=requests_per_minute) if rest else None
        self.followups = FollowUps(self.store, Settings(routing_key=Secret(ROUTING_KEY), public_url=PUBLIC_URL),
                                   self.holder, self.rest, clock=self.clock)
        self.worker = DeliveryWorker(
            self.store, Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url),
            client=EventsClient(ROUTING_KEY, pd.url, timeout=2.0, verify=pd.ssl_context), clock=self.clock,
            out=io.StringIO(), retry_multiplier=1.0, retry_max=10.0, followups=self.followups)

    def alert(self, event_id: str, state: AlertState = AlertState.FIRING, *, monitor: str = "7001",
              users_pct: float = 27.4) -> dict[str, Any]:
        """A Datadog alert of the checkout monitor, decided by the shipped rules and received now."""
        now = datetime.fromtimestamp(self.clock.now, tz=UTC)
        firing = state is AlertState.FIRING
        alert = Alert(source="datadog", source_event_id=event_id, received_at=now,
                      title="Checkout: users cannot pay", state=state, group_key=f"datadog:{monitor}:service:checkout",
                      service="checkout", dimensions={"users_affected_pct": users_pct} if firing else {},
                      fields={"monitor_id": monitor},
                      links=(Link(f"https://app.datadoghq.com/monitors/{monitor}", "Datadog monitor"),))
        ruleset = self.holder.current
        return accept_and_decide(self.store, [(alert, evaluate(alert, ruleset, now))], [], now,
                                 ruleset)[0].to_json()

    def drain(self, seconds: float = 30.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            while self.worker.run_once():
                pass
            self.clock.now += 1.0

    def incident(self, key: int | str) -> dict[str, Any]:
        incident = self.store.find_incident(str(key))
        assert incident is not None
        incident["timeline"] = self.store.incident_timeline(incident["id"])
        return incident

    def kinds(self, key: int | str) -> list[str]:
        return [e["kind"] for e in self.incident(key)["timeline"]]

    def close(self) -> None:
        self.worker.close()
        if self.rest is not None:
            self.rest.close()


def page_and_resolve(bridge: Bridge, prefix: str = "a", monitor: str = "7001") -> dict[str, Any]:
    """A P0 pages, its roles are set up, then it recovers; returns the bridge incident."""
    opened = bridge.alert(f"{prefix}1", monitor=monitor)
    assert (opened["severity"], opened["outcome"]) == ("P0", "opened")
    bridge.drain(15)
    assert bridge.alert(f"{prefix}2", AlertState.RESOLVED, monitor=monitor)["outcome"] == "resolved"
    bridge.drain(15)
    return bridge.incident(opened["incident_id"])


def notes_with(pd_incident: Incident, text: str) -> list[str]:
    return [n["content"] for n in pd_incident.notes if text in n["content"]]


def checklist(pd: FakePagerDuty, dedup_key: str) -> str:
    [pd_incident] = pd.incidents_for(dedup_key)
    [note] = notes_with(pd_incident, "resolution checklist, by role")
    return note


def test_resolution_note_addresses_the_four_roles_with_their_holders(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd)
    incident = page_and_resolve(bridge)
    [pd_incident] = pd.incidents_for(incident["dedup_key"])
    assert pd_incident.status == "resolved"
    note = checklist(pd, incident["dedup_key"])
    for role, holder in HOLDERS.items():
        assert f"- {role} ({holder}): " in note
    assert "  - monitor 7001, Checkout: users cannot pay: https://app.datadoghq.com/monitors/7001" in note
    assert f"Post-mortem draft: {PUBLIC_URL}/api/v1/incidents/{incident['id']}/postmortem" in note
    assert "Final stakeholder update (draft):" in note and "Impact: 27.4% of users affected." in note
    assert note.endswith(f"[incident-bridge:resolution:{incident['id']}:1]")
    assert pd_incident.status_updates == []  # not opted in: a draft only
    assert incident["details"]["stakeholder_update"]["state"] == "drafted"
    assert {"resolution_note", "final_update"} <= set(bridge.kinds(incident["id"]))
    # The post-mortem draft (written 30 s after the resolution) has these steps in its timeline.
    bridge.drain(40)
    draft = bridge.store.get_postmortem(incident["id"]) or ""
    assert "**Resolution checklist:** resolution checklist noted" in draft
    assert "**Final update:** final stakeholder update drafted in the resolution note" in draft
    assert not bridge.store.list_jobs(state="dead")
    bridge.close()


def test_the_resolution_note_is_idempotent(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd, settings="  final_update: status_update\n")
    incident = page_and_resolve(bridge)
    # The same job again (a worker that died after PagerDuty answered, before the job was marked done).
    bridge.store.enqueue("resolution_note", incident["dedup_key"], incident["id"], {"resolution": 1},
                         bridge.clock.now)
    bridge.drain(10)
    [pd_incident] = pd.incidents_for(incident["dedup_key"])
    assert len(notes_with(pd_incident, "resolution checklist, by role")) == 1
    assert len(pd_incident.status_updates) == 1
    assert bridge.kinds(incident["id"]).count("final_update") == 1
    bridge.close()


def test_opt_in_sends_the_final_update_as_a_status_update(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd, settings="  final_update: status_update\n")
    incident = page_and_resolve(bridge)
    [pd_incident] = pd.incidents_for(incident["dedup_key"])
    [update] = pd_incident.status_updates
    assert update["message"].startswith("Resolved: Checkout: users cannot pay\n")
    assert "Next step: a post-mortem with everyone involved; its date is to be set." in update["message"]
    [post] = pd.requests_to(f"/incidents/{pd_incident.id}/status_updates", "POST")
    assert post.header("From") == FROM_EMAIL
    note = checklist(pd, incident["dedup_key"])
    assert "as a PagerDuty status update" in note and f"(as sent):\n\n{update['message']}" in note
    assert bridge.incident(incident["id"])["details"]["stakeholder_update"]["state"] == "sent"
    bridge.close()


def test_a_rule_can_opt_in_on_its_own(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd)
    routing = bridge.holder.path / "routing.yaml"
    text = routing.read_text(encoding="utf-8").replace("    repage_after: 30m\n",
                                                       "    repage_after: 30m\n    final_update: status_update\n", 1)
    routing.write_text(text, encoding="utf-8")
    bridge.holder.reload()
    incident = page_and_resolve(bridge)
    assert incident["rule"] == "datadog-monitor"
    assert len(pd.incidents_for(incident["dedup_key"])[0].status_updates) == 1
    bridge.close()


def test_without_the_ability_the_note_carries_the_draft_and_one_warning(
        tmp_path: Path, pd: FakePagerDuty, caplog: pytest.LogCaptureFixture) -> None:
    pd.abilities.discard("status_updates")
    caplog.set_level(logging.WARNING, REST_LOGGER)
    bridge = Bridge(tmp_path, pd, settings="  final_update: status_update\n")
    first = page_and_resolve(bridge, "a", "7001")
    second = page_and_resolve(bridge, "b", "7002")
    for incident in (first, second):
        note = checklist(pd, incident["dedup_key"])
        assert "lacks the ability (HTTP 402)" in note and "Final stakeholder update (draft):" in note
        warnings = [e for e in bridge.incident(incident["id"])["timeline"]
                    if e["kind"] == "final_update" and e["description"].startswith("warning:")]
        assert len(warnings) == 1
    # One 402, one log warning; the second incident does not even ask. Nothing retries, nothing dead-letters.
    assert len(pd.requests_to("/incidents/", "POST")) > 0
    assert len([r for r in pd.requests if r.path.endswith("/status_updates")]) == 1
    assert len([r for r in caplog.records if "status_updates" in r.getMessage()]) == 1
    assert not bridge.store.list_jobs(state="dead")
    bridge.close()


def test_a_lasting_refusal_of_the_status_update_still_posts_the_checklist(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd, settings="  final_update: status_update\n")
    opened = bridge.alert("f1")
    bridge.drain(15)
    [pd_incident] = pd.incidents_for(opened["dedup_key"])
    # An account may answer 403 rather than 402 for a missing entitlement: not retried, the note still goes out.
    pd.fail(403, times=1, path=f"/incidents/{pd_incident.id}/status_updates",
            body={"error": {"message": "Forbidden", "code": 2010}})
    bridge.alert("f2", AlertState.RESOLVED)
    bridge.drain(15)
    note = checklist(pd, opened["dedup_key"])
    assert "PagerDuty refused it as a status update" in note and "Final stakeholder update (draft):" in note
    [warning] = [e for e in bridge.incident(opened["incident_id"])["timeline"] if e["kind"] == "final_update"]
    assert warning["description"].startswith("warning: PagerDuty refused") and "answered 403" in warning["description"]
    assert not bridge.store.list_jobs(state="dead")
    bridge.close()


def test_the_checklist_waits_for_the_rest_rate_limit(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd)
    incident = page_and_resolve(bridge)
    assert bridge.rest is not None
    jobs = [j for j in bridge.store.list_jobs() if j["kind"] == "resolution_note"]
    assert [j["state"] for j in jobs] == ["delivered"]
    # A second resolution note while the client's budget is spent: re-queued as rate_limited, never dropped.
    while bridge.rest.limiter.try_acquire() is None:
        pass
    bridge.store.enqueue("resolution_note", incident["dedup_key"], incident["id"], {"resolution": 2},
                         bridge.clock.now)
    bridge.drain(5)
    [limited] = [j for j in bridge.store.list_jobs() if j["payload"] == {"resolution": 2}]
    assert (limited["state"], limited["reason"]) == ("pending", "rate_limited")
    bridge.drain(90)
    assert [j["state"] for j in bridge.store.list_jobs() if j["kind"] == "resolution_note"] == ["delivered"] * 2
    bridge.close()


def test_without_an_api_token_the_checklist_is_skipped_on_the_timeline(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd, rest=False)
    incident = page_and_resolve(bridge)
    timeline = bridge.incident(incident["id"])["timeline"]
    assert any(e["kind"] == "resolution_note" and "PAGERDUTY_API_TOKEN is not set" in e["description"]
               for e in timeline)
    details = bridge.incident(incident["id"])["details"]["stakeholder_update"]
    assert details["state"] == "skipped" and details["text"].startswith("Resolved: Checkout")
    assert pd.requests_to("/incidents") == []
    bridge.close()


def test_a_p3_resolution_gets_no_checklist(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd)
    opened = bridge.alert("p3-1", users_pct=2)
    assert opened["severity"] == "P3"
    bridge.drain(10)
    bridge.alert("p3-2", AlertState.RESOLVED)
    bridge.drain(15)
    [pd_incident] = pd.incidents_for(opened["dedup_key"])
    assert notes_with(pd_incident, "resolution checklist, by role") == []
    assert "resolution_note" not in bridge.kinds(opened["incident_id"])
    bridge.close()


# -- reopening -----------------------------------------------------------------------------------------------------


def test_a_refire_within_the_window_reopens_the_same_incident(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd)
    incident = page_and_resolve(bridge)
    [first_pd] = pd.incidents_for(incident["dedup_key"])
    bridge.clock.now += 240  # four minutes after the resolution: within the default 30 minutes
    again = bridge.alert("a3")
    assert (again["outcome"], again["incident_id"]) == ("reopened", incident["id"])
    bridge.drain(20)
    reopened = bridge.incident(incident["id"])
    assert reopened["status"] == "open"
    assert reopened["details"]["reopens"][0]["pagerduty"]["id"] == first_pd.id  # the link to the previous one
    # PagerDuty cannot reopen: the same dedup key opened a new incident there, which gets the roles again.
    first, second = pd.incidents_for(incident["dedup_key"])
    assert (first.id, first.status, second.status) == (first_pd.id, "resolved", "triggered")
    assert reopened["pagerduty"]["id"] == second.id
    [note] = notes_with(second, "the resolution did not hold")
    assert f"the previous one is {first.id}" in note and "fired again 4 min after" in note
    assert notes_with(second, "Role assignment")
    assert "reopen" in bridge.kinds(incident["id"])
    # Resolved again: a second checklist, on the new PagerDuty incident.
    bridge.alert("a4", AlertState.RESOLVED)
    bridge.drain(15)
    [second_note] = notes_with(second, "resolution checklist, by role")
    assert "resolved again (resolution 2: the previous one did not hold)" in second_note
    assert "after it came back once following an earlier resolution" in second_note
    bridge.drain(40)
    draft = bridge.store.get_postmortem(incident["id"]) or ""
    assert "**Reopened:** the resolution did not hold" in draft
    bridge.close()


def test_a_refire_before_the_resolve_left_keeps_the_pagerduty_incident_open(tmp_path: Path,
                                                                            pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd)
    opened = bridge.alert("k1")
    bridge.drain(15)
    bridge.alert("k2", AlertState.RESOLVED)
    again = bridge.alert("k3")  # before the worker sent the resolve
    assert (again["outcome"], again["incident_id"]) == ("reopened", opened["incident_id"])
    bridge.drain(20)
    [pd_incident] = pd.incidents_for(opened["dedup_key"])  # still one, never resolved
    assert pd_incident.status == "triggered"
    assert [e.event_action for e in pd.events] == ["trigger", "trigger"]
    [superseded] = [j for j in bridge.store.list_jobs() if j["action"] == "resolve"]
    assert (superseded["state"], superseded["reason"]) == ("superseded", "reopened_first")
    [note] = notes_with(pd_incident, "the resolution did not hold")
    assert "this incident never resolved there (the resolve had not gone out), so it stayed open" in note
    # The checklist of the resolution that did not hold is not posted.
    assert notes_with(pd_incident, "resolution checklist, by role") == []
    bridge.close()


def test_a_refire_after_the_window_opens_a_new_incident(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd, settings="  reopen_within: 10m\n")
    incident = page_and_resolve(bridge)
    bridge.clock.now += 11 * 60
    again = bridge.alert("a3")
    assert again["outcome"] == "opened" and again["incident_id"] != incident["id"]
    bridge.close()


def test_reopen_within_0_turns_reopening_off(tmp_path: Path, pd: FakePagerDuty) -> None:
    bridge = Bridge(tmp_path, pd, settings="  reopen_within: 0\n")
    incident = page_and_resolve(bridge)
    bridge.clock.now += 5
    again = bridge.alert("a3")
    assert again["outcome"] == "opened" and again["incident_id"] != incident["id"]
    bridge.close()


def test_every_follow_up_kind_has_a_handler_and_every_handler_a_kind() -> None:
    from bridge.followups import HANDLERS
    from bridge.store import JobKind

    assert set(HANDLERS) == set(JobKind) - {JobKind.EVENT}
