"""A dry run (no routing key) shows every step a real run would take in PagerDuty: the follow-ups run their real
code with `DryRunRest` in place of the REST client, and each request they would send is recorded on the incident's
timeline and printed as one block per follow-up. Real store (SQLite), the shipped rules, the real worker in dry-run
mode (nothing can be sent: there is no client and no PagerDuty), a manual clock."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.delivery.worker import DeliveryWorker
from bridge.followups import DryRunRest, FollowUps
from bridge.followups.roles import role_note
from bridge.model import Alert, AlertState, Link, Severity
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.engine import evaluate
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.shared import copy_shipped_rules

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
LABEL = "DRY-RUN (no PAGERDUTY_ROUTING_KEY, nothing sent)"
# The sender's own status tags: the incident is called by what follows them, beside one priority, ours.
SENDER_TITLE = "[P1] [Triggered] Checkout: users cannot pay"
TITLE = "Checkout: users cannot pay"
RESPONDERS = ("would request responders: Incident Coordinator: escalation policy 'Engineering Managers'; "
              "Technical Lead: escalation policy 'Senior Developers'; Infrastructure Lead: escalation policy "
              "'Platform Engineering'; Communications Lead: escalation policy 'Product Managers'; Customer Support: "
              "escalation policy 'Customer Support'")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class DryBridge:
    """The worker side of a bridge without a routing key: store, shipped rules, follow-ups, worker."""

    def __init__(self, tmp_path: Path) -> None:
        self.holder = RulesetHolder(copy_shipped_rules(tmp_path / "rules"), None)
        self.holder.load()
        self.clock = Clock()
        self.store = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")
        self.out = io.StringIO()
        settings = Settings()
        assert settings.dry_run
        self.followups = FollowUps(self.store, settings, self.holder,
                                   DryRunRest(self.store, clock=self.clock, out=self.out), clock=self.clock)
        self.worker = DeliveryWorker(self.store, settings, clock=self.clock, out=self.out, followups=self.followups)

    def alert(self, event_id: str, state: AlertState = AlertState.FIRING, *, users_pct: float = 27.4) -> dict[str, Any]:
        """A Datadog alert of the checkout monitor, decided by the shipped rules and received now."""
        now = datetime.fromtimestamp(self.clock.now, tz=UTC)
        firing = state is AlertState.FIRING
        alert = Alert(source="datadog", source_event_id=event_id, received_at=now, title=SENDER_TITLE, state=state,
                      group_key="datadog:7001:service:checkout", service="checkout",
                      dimensions={"users_affected_pct": users_pct} if firing else {}, fields={"monitor_id": "7001"},
                      links=(Link("https://app.datadoghq.com/monitors/7001", "Datadog monitor"),))
        ruleset = self.holder.current
        return accept_and_decide(self.store, [(alert, evaluate(alert, ruleset, now))], [], now,
                                 ruleset)[0].to_json()

    def drain(self, seconds: float = 30.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            while self.worker.run_once():
                pass
            self.clock.now += 1.0

    def incident(self, incident_id: int) -> dict[str, Any]:
        incident = self.store.incident_row(incident_id)
        assert incident is not None
        incident["timeline"] = self.store.incident_timeline(incident_id)
        return incident

    def described(self, incident_id: int) -> list[str]:
        """The dry-run steps on the incident's timeline, in order."""
        return [e["description"] for e in self.incident(incident_id)["timeline"] if e["kind"] == "dry_run"]


def test_a_p0_dry_run_describes_priority_note_responders_and_escalations(tmp_path: Path) -> None:
    bridge = DryBridge(tmp_path)
    opened = bridge.alert("a1")
    assert (opened["severity"], opened["outcome"]) == ("P0", "opened")
    bridge.drain(15)
    incident = bridge.incident(opened["incident_id"])
    assert incident["title"] == TITLE
    assert incident["pagerduty"]["id"] is None  # nothing was sent: no PagerDuty incident is recorded as ours

    [priority, note, responders] = bridge.described(incident["id"])
    assert priority == ("would set priority \"P1\" (the account's priority for our P0, by settings.priority_names) "
                        "and urgency high")
    decision = bridge.store.incident_alerts(incident["id"])[0]["decision"]
    expected_note = role_note(bridge.holder.current, Severity.P0, decision["roles"], decision["reasons"],
                              decision["rule"])
    assert note == f"would add a note:\n{expected_note}"
    assert responders.splitlines()[0] == RESPONDERS
    assert responders.splitlines()[1].startswith(f"message: incident-bridge: P0 {TITLE}. You are requested as ")

    timers = [e["description"] for e in incident["timeline"] if e["kind"] == "escalation_timer"]
    assert timers == [
        "escalates at +10m (12:10:00 UTC) to escalation policy 'Senior Developers' when the Incident Coordinator "
        "(escalation policy 'Engineering Managers') has not accepted by then",
        "escalates at +10m (12:10:00 UTC) to escalation policy 'Engineering Managers' when the Communications Lead "
        "(escalation policy 'Product Managers') has not accepted by then"]
    # Nobody was requested and no note was added: the follow-up claims neither.
    kinds = {e["kind"] for e in incident["timeline"]}
    assert "responder_request" not in kinds
    assert not any("role assignment noted" in e["description"] for e in incident["timeline"])

    # One block for the set-up, under the event's own dry-run line: the same steps, in the same order.
    printed = bridge.out.getvalue()
    start = printed.index(f"{LABEL}: set-up of incident {incident['id']}, P0 \"{TITLE}\"\n")
    block = printed[start:]
    steps = [block.index(text.splitlines()[0]) for text in (priority, note, RESPONDERS, *timers)]
    assert steps == sorted(steps)
    assert f"  - {priority}\n  - would add a note:\n      incident-bridge declared this a P0 incident" in block


def test_a_p2_dry_run_sets_low_urgency_and_requests_nobody(tmp_path: Path) -> None:
    bridge = DryBridge(tmp_path)
    opened = bridge.alert("b1", users_pct=6)
    assert opened["severity"] == "P2"
    bridge.drain(15)
    incident = bridge.incident(opened["incident_id"])
    assert bridge.described(incident["id"]) == ["would set urgency low, no priority"]
    decisions = [e["description"] for e in incident["timeline"] if e["kind"] == "decision"]
    assert decisions[-1] == ("no responder requests: P2 declares no incident; the page goes to the service's "
                             "escalation policy through the Events API")
    printed = bridge.out.getvalue()
    assert "would request responders" not in printed and "escalates at" not in printed
    assert f"{LABEL}: set-up of incident {incident['id']}, P2 \"{TITLE}\"\n" in printed


def test_an_escalation_timer_describes_the_backup_request_when_it_falls_due(tmp_path: Path) -> None:
    bridge = DryBridge(tmp_path)
    opened = bridge.alert("c1")
    bridge.drain(15)
    before = len(bridge.described(opened["incident_id"]))
    bridge.clock.now = T0 + 600
    bridge.drain(5)
    later = bridge.described(opened["incident_id"])[before:]
    requests = [text for text in later if text.startswith("would request responders: ")]
    assert [r.splitlines()[0] for r in requests] == [
        "would request responders: backup of the Incident Coordinator: escalation policy 'Senior Developers'",
        "would request responders: backup of the Communications Lead: escalation policy 'Engineering Managers'"]
    notes = [text for text in later if text.startswith("would add a note:\nEscalation: ")]
    assert len(notes) == 2
    # Nobody accepts a request that was never sent, and nobody was requested: no escalation is claimed.
    assert "escalation" not in {e["kind"] for e in bridge.incident(opened["incident_id"])["timeline"]}
    assert f"{LABEL}: escalation check of incident {opened['incident_id']}" in bridge.out.getvalue()


def test_the_resolution_checklist_of_a_dry_run_page_is_described(tmp_path: Path) -> None:
    bridge = DryBridge(tmp_path)
    opened = bridge.alert("d1")
    bridge.drain(15)
    assert bridge.alert("d2", AlertState.RESOLVED)["outcome"] == "resolved"
    bridge.drain(15)
    [checklist] = [text for text in bridge.described(opened["incident_id"])
                   if "resolution checklist, by role" in text]
    # The monitor that fired is named as the incident is: one priority in the note, the incident's P0.
    assert f"  - monitor 7001, {TITLE}: https://app.datadoghq.com/monitors/7001" in checklist
    assert "[P1]" not in checklist
    assert f"{LABEL}: resolution checklist of incident {opened['incident_id']}, P0 \"{TITLE}\"" in bridge.out.getvalue()


def test_a_dry_run_queues_no_reconciliation(tmp_path: Path) -> None:
    # Nothing was ever sent, so there is nothing in PagerDuty to compare with.
    assert DryBridge(tmp_path).followups.queue_reconciliation() is None
