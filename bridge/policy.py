"""The policy stage: given a decided alert and the state of its group's incident, what happens now.

Pure: it takes values and returns a `Plan`; the store carries the plan out inside the receipt transaction.
This is where grouping (an alert of an open incident attaches to it), re-page intervals, severity raises (never
lowered on our own), flap control (a pending window), and the resolve rules live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.model import Action, Alert, Decision, Severity


@dataclass(frozen=True)
class IncidentState:
    """What the store knows of the open incident of a dedup key."""

    id: int
    severity: Severity | None
    opened_at: datetime
    last_paged_at: datetime | None
    any_trigger_attempted: bool  # a trigger was sent, or tried (PagerDuty may have it)
    pending_triggers: int        # triggers not yet attempted (for example inside a pending window)


@dataclass(frozen=True)
class Plan:
    """What to do. `incident` is create / update / resolve / attach / None; `event` is trigger / resolve / None."""

    outcome: str
    incident: str | None = None
    severity: Severity | None = None
    event: str | None = None
    not_before: datetime | None = None
    supersede_pending: bool = False
    timeline: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def plan(alert: Alert, decision: Decision, incident: IncidentState | None, now: datetime) -> Plan:
    """Decide the incident and delivery steps for one decided alert."""
    sev = decision.severity
    sev_name = sev.name if sev else "no severity"
    if decision.action is Action.RESOLVE:
        if incident is None:
            return Plan("nothing_to_resolve", timeline=(("alert", f"recovery of {alert.title}: no open incident"),))
        if not incident.any_trigger_attempted:
            # Recovered before its trigger ever left (inside a pending window, or while the outbox was backed
            # up): the trigger is dropped rather than re-opening the incident, and nothing needs resolving.
            return Plan("resolved_before_page", incident="resolve", supersede_pending=True,
                        timeline=(("resolution", "recovered before the page was sent: the page was dropped"),))
        return Plan("resolved", incident="resolve", event="resolve", supersede_pending=True,
                    timeline=(("resolution", f"recovered: {alert.title}"),))

    if decision.action in (Action.RECORD, Action.SUPPRESS):
        outcome = "suppressed" if decision.action is Action.SUPPRESS else "recorded"
        if incident is not None:
            return Plan(outcome, incident="attach",
                        timeline=(("alert", f"{alert.title} ({sev_name}, {outcome}: {_last(decision)})"),))
        return Plan(outcome)

    assert decision.action is Action.PAGE and sev is not None
    if incident is None:
        not_before = now + timedelta(seconds=decision.pending_seconds) if decision.pending_seconds else None
        lines = [("detection", f"first alert: {alert.title}"),
                 ("decision", f"{sev.name} by rule {decision.rule or '-'}: {'; '.join(decision.reasons[1:3])}")]
        if not_before is not None:
            lines.append(("decision", f"pending for {decision.pending_seconds}s before paging (flap control)"))
        return Plan("opened", incident="create", severity=sev, event="trigger", not_before=not_before,
                    timeline=tuple(lines))

    if sev.is_higher_than(incident.severity):
        old = incident.severity.name if incident.severity else "none"
        return Plan("raised", incident="update", severity=sev, event="trigger",
                    timeline=(("severity_change", f"severity raised {old} -> {sev.name}: {alert.title}"),))
    repage = decision.repage_seconds
    if incident.pending_triggers:
        return Plan("attached", incident="attach",
                    timeline=(("alert", f"{alert.title} ({sev.name}): a page is already queued"),))
    if repage and incident.last_paged_at is not None and now - incident.last_paged_at < timedelta(seconds=repage):
        return Plan("attached", incident="attach",
                    timeline=(("alert", f"{alert.title} ({sev.name}): attached, re-page interval "
                               f"{repage}s not elapsed"),))
    if repage == 0 and incident.last_paged_at is not None:
        # No re-page interval: repeats attach to the open incident instead of paging again.
        return Plan("attached", incident="attach", timeline=(("alert", f"{alert.title} ({sev.name}): attached"),))
    return Plan("repaged", incident="update", severity=incident.severity, event="trigger",
                timeline=(("alert", f"{alert.title} ({sev.name}): re-paged after the re-page interval"),))


def _last(decision: Decision) -> str:
    return decision.reasons[-1] if decision.reasons else ""
