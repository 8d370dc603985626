"""Closing the loop, as tables: the resolution checklist note, the final stakeholder update and the reopen note are
pure functions of recorded facts (bridge/followups/resolution_text.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bridge.followups.resolution_text import (
    CHECKLIST,
    FinalUpdateState,
    MonitorRef,
    PagerDutyRef,
    Reopening,
    final_update_mode,
    final_update_text,
    fired_monitors,
    impact_text,
    reopen_note_text,
    resolution_note_text,
)
from bridge.model import CostFacts, Severity
from bridge.postmortem import IncidentFacts

OPENED = datetime(2026, 3, 14, 9, 12, 5, tzinfo=UTC)
RESOLVED = datetime(2026, 3, 14, 9, 59, 10, tzinfo=UTC)
HOLDERS = {
    "Incident Coordinator": "escalation policy Engineering Managers",
    "Technical Lead": "escalation policy Senior Developers",
    "Infrastructure Lead": "escalation policy Platform Engineering",
    "Communications Lead": "escalation policy Product Managers",
}
MONITOR = MonitorRef("7001", "Checkout: users cannot pay", "https://app.datadoghq.com/monitors/7001")
LINK = "https://bridge.example.com/api/v1/incidents/3/postmortem"


def facts(**changes: Any) -> IncidentFacts:
    base = IncidentFacts(key="datadog:7001:service:checkout", title="Checkout: users cannot pay",
                         severity=Severity.P0, status="resolved", opened_at=OPENED, resolved_at=RESOLVED,
                         service="checkout", source="datadog",
                         dimensions={"users_affected_pct": 27.4, "customers_affected_pct": 18.0})
    return replace(base, **changes)


# -- the final stakeholder update --------------------------------------------------------------------------------

DRAFT = """Resolved: Checkout: users cannot pay

What happened: Checkout: users cannot pay, on service checkout, reported by datadog (P0).
Duration: 47 min, from the first alert at 2026-03-14 09:12:05 UTC to the resolution at 2026-03-14 09:59:10 UTC.
Impact: 27.4% of users affected; 18% of customers affected.
Current state: resolved at 2026-03-14 09:59:10 UTC.
Next step: a post-mortem with everyone involved; its date is to be set."""


def test_final_update_says_what_how_long_impact_state_and_next_step() -> None:
    assert final_update_text(facts()) == DRAFT


UPDATE_LINES = [
    # id, facts changes, reopens, the line expected in the draft
    ("no-service", {"service": None}, 0,
     "What happened: Checkout: users cannot pay, reported by datadog (P0)."),
    ("title-on-one-line", {"title": "Checkout\n  down", "service": None, "source": ""}, 0,
     "What happened: Checkout down (P0)."),
    ("peak-severity", {"severity": Severity.P2, "highest_severity": Severity.P0}, 0,
     "What happened: Checkout: users cannot pay, on service checkout, reported by datadog (P0)."),
    ("two-days", {"resolved_at": OPENED + timedelta(days=2, minutes=5)}, 0,
     "Duration: 2 d 5 min, from the first alert at 2026-03-14 09:12:05 UTC to the resolution at "
     "2026-03-16 09:17:05 UTC."),
    ("still-open", {"resolved_at": None, "status": "triggered"}, 0,
     "Current state: not resolved yet."),
    ("reopened-once", {}, 1,
     "Current state: resolved at 2026-03-14 09:59:10 UTC, after it came back once following an earlier resolution."),
    ("reopened-twice", {}, 2,
     "Current state: resolved at 2026-03-14 09:59:10 UTC, after it came back 2 times following an earlier "
     "resolution."),
]


@pytest.mark.parametrize(("changes", "reopens", "line"), [c[1:] for c in UPDATE_LINES],
                         ids=[c[0] for c in UPDATE_LINES])
def test_final_update_lines(changes: dict[str, Any], reopens: int, line: str) -> None:
    assert line in final_update_text(facts(**changes), reopens=reopens).splitlines()


COST = CostFacts(actual=Decimal("2420"), expected=Decimal("1000"), impact=Decimal("1420"), period="monthly",
                 increase_pct=Decimal("142"))

IMPACTS = [
    # id, dimensions, cost, expected impact text
    ("users-and-customers", {"users_affected_pct": 27.4, "customers_affected_pct": 18.0}, None,
     "27.4% of users affected; 18% of customers affected."),
    ("users-only", {"users_affected_pct": 12.0}, None, "12% of users affected."),
    ("cost-percent-and-amounts", {"cloud_cost_increase_pct": 142.0}, COST,
     "unexpected increase in cloud costs of 142% (actual USD 2,420.00, expected USD 1,000.00, USD 1,420.00 over, "
     "monthly)."),
    ("cost-dimension-only", {"cloud_cost_increase_pct": 75.0}, None, "unexpected increase in cloud costs of 75%."),
    ("cost-forecast", {}, CostFacts(actual=Decimal("900.5"), forecast=True, currency="EUR"),
     "unexpected increase in cloud costs (forecast EUR 900.50)."),
    ("new-spend-has-no-percent", {}, CostFacts(actual=Decimal("300"), expected=Decimal("0"), new_spend=True),
     "new cloud spend (no spend was expected) (actual USD 300.00, expected USD 0.00)."),
    ("other-dimensions-by-name", {"users_affected_pct": 6.0, "error_rate_pct": 3.5, "queue_depth": 900.0}, None,
     "6% of users affected; error rate: 3.5%; queue depth: 900."),
    ("nothing-recorded", {}, None, "no impact figures were recorded by the monitors."),
]


@pytest.mark.parametrize(("dimensions", "cost", "expected"), [c[1:] for c in IMPACTS], ids=[c[0] for c in IMPACTS])
def test_impact_in_the_process_terms(dimensions: dict[str, float], cost: CostFacts | None, expected: str) -> None:
    assert impact_text(facts(dimensions=dimensions, cost=cost)) == expected


MODES = [
    # id, settings, the incident rule's extra, expected
    ("default-is-a-draft", {}, None, "note"),
    ("setting-opts-in", {"final_update": "status_update"}, None, "status_update"),
    ("rule-opts-in", {}, {"final_update": "status_update"}, "status_update"),
    ("rule-opts-out", {"final_update": "status_update"}, {"final_update": "note"}, "note"),
    ("rule-without-the-key", {"final_update": "status_update"}, {"postmortem": True}, "status_update"),
]


@pytest.mark.parametrize(("settings", "extra", "expected"), [c[1:] for c in MODES], ids=[c[0] for c in MODES])
def test_final_update_mode(settings: dict[str, Any], extra: dict[str, Any] | None, expected: str) -> None:
    assert final_update_mode(settings.get("final_update"), extra) == expected


# -- monitors that fired ---------------------------------------------------------------------------------------


def stored(source: str = "datadog", state: str = "firing", monitor: str = "7001",
           links: list[dict[str, str]] | None = None, title: str = "Checkout: users cannot pay") -> dict[str, Any]:
    """An alert as Store.incident_alerts returns it."""
    default = [{"href": "https://app.datadoghq.com/event/event?id=1", "text": "Datadog event"},
               {"href": f"https://app.datadoghq.com/monitors/{monitor}", "text": "Datadog monitor"}]
    return {"title": title, "state": state, "alert": {
        "source": source, "state": state, "title": title, "fields": {"monitor_id": monitor} if monitor else {},
        "links": default if links is None else links}}


MONITORS = [
    ("monitor-link", [stored()], (MONITOR,)),
    ("each-monitor-once", [stored(), stored(), stored(monitor="7002", title="Latency")],
     (MONITOR, MonitorRef("7002", "Latency", "https://app.datadoghq.com/monitors/7002"))),
    ("recoveries-did-not-fire", [stored(state="resolved")], ()),
    ("monitor-id-without-link", [stored(links=[])], (MonitorRef("7001", "Checkout: users cannot pay", ""),)),
    ("eu-site-link-kept", [stored(links=[{"href": "https://app.datadoghq.eu/monitors/9", "text": "Datadog monitor"}],
                                  monitor="")],
     (MonitorRef("9", "Checkout: users cannot pay", "https://app.datadoghq.eu/monitors/9"),)),
    ("other-sources-have-no-monitors", [stored(source="aws_sns", links=[], monitor="")], ()),
    ("alertmanager-fingerprint-is-no-monitor", [stored(source="alertmanager", links=[], monitor="42")], ()),
]


@pytest.mark.parametrize(("alerts", "expected"), [c[1:] for c in MONITORS], ids=[c[0] for c in MONITORS])
def test_fired_monitors(alerts: list[dict[str, Any]], expected: tuple[MonitorRef, ...]) -> None:
    assert fired_monitors(alerts) == expected


# -- the resolution checklist note -------------------------------------------------------------------------------

NOTE = f"""incident-bridge: this P0 incident is resolved (2026-03-14 09:59:10 UTC, 47 min after the first alert). \
The process's resolution checklist, by role:

- Infrastructure Lead (escalation policy Platform Engineering): confirm the resolution is stable on infrastructure \
metrics and deployment health. Datadog monitors that fired:
  - monitor 7001, Checkout: users cannot pay: https://app.datadoghq.com/monitors/7001
- Technical Lead (escalation policy Senior Developers): verify the resolution from the user's side.
- Communications Lead (escalation policy Product Managers): send the final update to all stakeholders. The bridge \
sent the update below to the incident's subscribers as a PagerDuty status update.
- Incident Coordinator (escalation policy Engineering Managers): schedule the post-mortem meeting with everyone \
involved, Platform Engineering included. Post-mortem draft: {LINK}

Final stakeholder update (as sent):

{DRAFT}"""


def test_resolution_note_addresses_each_step_to_its_role_and_holder() -> None:
    note = resolution_note_text(facts(), holders=HOLDERS, monitors=[MONITOR], final_update="sent", draft=DRAFT,
                                postmortem_link=LINK)
    assert note == NOTE
    roles = [line[2:].split(" (")[0] for line in note.splitlines() if line.startswith("- ")]
    assert roles == [role for role, _ in CHECKLIST]


NOTE_CASES: list[tuple[str, FinalUpdateState, dict[str, Any], str]] = [
    ("drafted-by-choice", "drafted", {},
     "Draft below: send it to the stakeholders (the bridge sends it as a PagerDuty status update when the rules "
     "set final_update: status_update)."),
    ("402-fallback", "unsupported", {},
     "The bridge could not send it as a PagerDuty status update: this PagerDuty account lacks the ability "
     "(HTTP 402). Send the draft below to the stakeholders."),
    ("refused-for-another-reason", "refused", {},
     "PagerDuty refused it as a status update (the bridge's timeline of this incident says why). Send the draft "
     "below to the stakeholders."),
    ("no-monitor-recorded", "drafted", {"monitors": []},
     "No Datadog monitor was recorded for this incident: check the dashboards of service checkout."),
    ("role-without-target", "drafted", {"holders": {}}, "- Technical Lead (no target configured): verify"),
    ("second-resolution", "drafted", {"resolution": 2},
     "this P0 incident is resolved again (resolution 2: the previous one did not hold)"),
    ("link-without-public-url", "drafted", {"postmortem_link": "/api/v1/incidents/3/postmortem on the bridge"},
     "Post-mortem draft: /api/v1/incidents/3/postmortem on the bridge"),
]


@pytest.mark.parametrize(("state", "changes", "contains"), [c[1:] for c in NOTE_CASES],
                         ids=[c[0] for c in NOTE_CASES])
def test_resolution_note_variants(state: FinalUpdateState, changes: dict[str, Any], contains: str) -> None:
    kwargs: dict[str, Any] = {"holders": HOLDERS, "monitors": [MONITOR], "final_update": state, "draft": DRAFT,
                              "postmortem_link": LINK}
    kwargs.update(changes)
    note = resolution_note_text(facts(), **kwargs)
    assert contains in note
    assert note.endswith(f"Final stakeholder update ({'as sent' if state == 'sent' else 'draft'}):\n\n{DRAFT}")
    assert "Post-mortem draft ready" not in note and "Role assignment" not in note  # other notes' phrases


# -- the reopen note -------------------------------------------------------------------------------------------

AT = RESOLVED + timedelta(minutes=4)
REOPENS = [
    ("new-pagerduty-incident",
     Reopening(1, AT, RESOLVED, PagerDutyRef("PI00001", "https://acme.pagerduty.com/incidents/PI00001")),
     "PagerDuty: a resolved incident cannot reopen, so this is a new PagerDuty incident for the same dedup key; the "
     "previous one is PI00001 (https://acme.pagerduty.com/incidents/PI00001)."),
    ("previous-without-url", Reopening(1, AT, RESOLVED, PagerDutyRef("PI00001")),
     "the previous one is PI00001."),
    ("resolve-never-sent", Reopening(2, AT, RESOLVED, PagerDutyRef("PI00001"), kept_open=True),
     "PagerDuty: this incident never resolved there (the resolve had not gone out), so it stayed open."),
    ("no-previous-known", Reopening(1, AT, RESOLVED),
     "PagerDuty: the bridge knew no earlier PagerDuty incident for it."),
    ("resolution-time-unknown", Reopening(1, AT, None), "fired again shortly after it was resolved"),
]


@pytest.mark.parametrize(("reopening", "contains"), [c[1:] for c in REOPENS], ids=[c[0] for c in REOPENS])
def test_reopen_note(reopening: Reopening, contains: str) -> None:
    note = reopen_note_text("Checkout: users cannot pay", reopening, severity="P0")
    assert note.startswith("incident-bridge: the resolution did not hold.")
    assert contains in note
    assert f"reopening {reopening.number}, now P0" in note


def test_reopen_note_says_how_soon() -> None:
    note = reopen_note_text("Checkout", Reopening(1, AT, RESOLVED), severity="P1")
    assert "Checkout fired again 4 min after it was resolved at 2026-03-14 09:59:10 UTC" in note
