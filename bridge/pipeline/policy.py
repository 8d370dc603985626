"""The policy stage: given a decided alert and the incidents around it, what happens now.

Pure: it takes values and returns a `Plan`; the pipeline stage (`bridge.pipeline.stage`) gathers the context from
the store and has the store carry the plan out, in the batch's transaction. This is where these behaviours live:

- grouping: an alert whose group (dedup key) belongs to an open incident attaches to it instead of paging;
- severity raises: a higher severity re-triggers and raises the incident; the bridge never lowers it itself;
- re-page interval: a repeat at the same severity re-pages only after the rule's `repage_after`;
- flap control: a rule's `pending` window delays the first page; a recovery before any page was sent
  drops the page instead of opening and resolving an incident;
- alert storms: past a rule's threshold of new incidents in a window, new groups attach to the rule's storm
  incident (one page, a digest note) instead of paging hundreds of times;
- inhibition: while a more severe incident of an inhibiting rule is open, matching lower alerts attach to it;
- auto-resolve: an incident resolves when every group attached to it has recovered;
- heartbeats: an alert that matched only a heartbeat is consumed as a beat (outcome `heartbeat`);
- reopening: a group that fires again within the ruleset's `reopen_within` of its incident's resolution reopens
  that incident (same id) instead of opening a new one: the resolution did not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bridge.model import Action, Alert, Decision, Severity


class IncidentStep(StrEnum):
    """What a plan does to an incident."""

    CREATE = "create"
    UPDATE = "update"    # raise its severity, or re-page
    ATTACH = "attach"    # count the alert in, nothing else
    RESOLVE = "resolve"
    REOPEN = "reopen"


class MemberStep(StrEnum):
    """How the alert's group joins or leaves its incident's member list."""

    JOIN = "join"
    RECOVER = "recover"


class EventAction(StrEnum):
    """The Events API v2 event a plan sends."""

    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class IncidentState:
    """What the store knows of an open incident."""

    id: int
    severity: Severity | None
    opened_at: datetime
    last_paged_at: datetime | None
    any_trigger_attempted: bool  # a trigger was sent, or tried (PagerDuty may have it)
    pending_triggers: int        # triggers not yet attempted (for example inside a pending window)
    firing_members: int = 1      # groups attached to the incident that have not recovered (this one included)
    dedup_key: str = ""
    resolved_at: datetime | None = None  # set for a resolved incident (a candidate for reopening)


@dataclass(frozen=True)
class PolicyContext:
    """The incidents around an alert: its own group's, a storm anchor, an inhibiting one, and its group's incident
    resolved within the last `reopen_within` seconds (when it has no open one)."""

    incident: IncidentState | None = None
    storm_anchor: IncidentState | None = None
    storm_count: int = 0
    inhibitor: IncidentState | None = None
    inhibitor_rule: str = ""
    recently_resolved: IncidentState | None = None
    reopen_within: int = 0


@dataclass(frozen=True)
class Plan:
    """What to do.

    `incident`: create / update / resolve / attach / reopen / None. `target` is the incident acted on when it is
    not the alert's own (storm, inhibition), or the resolved incident a reopening opens again. `event`: trigger /
    resolve / None. `member`: how the alert's group joins (`join`) or leaves (`recover`) its incident's member list.
    """

    outcome: str
    incident: IncidentStep | None = None
    severity: Severity | None = None
    event: EventAction | None = None
    not_before: datetime | None = None
    supersede_pending: bool = False
    target: int | None = None
    member: MemberStep | None = None
    timeline: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def plan(alert: Alert, decision: Decision, ctx: PolicyContext, now: datetime) -> Plan:
    """Decide the incident and delivery steps for one decided alert."""
    incident = ctx.incident
    sev = decision.severity
    sev_name = sev.name if sev else "no severity"
    if decision.action is Action.RESOLVE:
        return _resolve(alert, incident)

    if decision.action in (Action.RECORD, Action.SUPPRESS):
        outcome = "suppressed" if decision.action is Action.SUPPRESS else "recorded"
        if decision.rule is None and decision.details.get("heartbeats"):
            outcome = "heartbeat"  # only a heartbeat's beat (a Watchdog): consumed, silenced or not
        if incident is not None:
            return Plan(outcome, incident=IncidentStep.ATTACH, target=incident.id,
                        timeline=(("alert", f"{alert.display_title} ({sev_name}, {outcome}: {_last(decision)})"),))
        return Plan(outcome)

    assert decision.action is Action.PAGE and sev is not None
    if incident is None:
        if ctx.inhibitor is not None:
            inh = ctx.inhibitor
            return Plan("inhibited", incident=IncidentStep.ATTACH, target=inh.id, member=MemberStep.JOIN,
                        timeline=(("inhibition", f"{alert.display_title} ({sev.name}) inhibited by open incident "
                                   f"{inh.id} ({inh.severity.name if inh.severity else '-'}, rule "
                                   f"{ctx.inhibitor_rule}): attached, not paged"),))
        recent = ctx.recently_resolved
        # Only an incident whose page went out is reopened: one dropped inside its pending window (flap control)
        # never paged, and a new incident keeps that flap control.
        if recent is not None and recent.any_trigger_attempted:
            return _reopen(alert, sev, recent, ctx.reopen_within, now)
        if ctx.storm_anchor is not None:
            anchor = ctx.storm_anchor
            return Plan("storm", incident=IncidentStep.ATTACH, target=anchor.id, member=MemberStep.JOIN,
                        timeline=(("alert", f"alert storm: {alert.display_title} ({sev.name}) attached "
                                   f"({ctx.storm_count} incidents of rule {decision.rule} in the window)"),))
        not_before = now + timedelta(seconds=decision.pending_seconds) if decision.pending_seconds else None
        lines = [("detection", f"first alert: {alert.display_title}"),
                 ("decision", f"{sev.name} by rule {decision.rule or '-'}: {'; '.join(decision.reasons[1:4])}")]
        if not_before is not None:
            lines.append(("decision", f"pending for {decision.pending_seconds}s before paging (flap control)"))
        return Plan("opened", incident=IncidentStep.CREATE, severity=sev, event=EventAction.TRIGGER,
                    not_before=not_before, member=MemberStep.JOIN, timeline=tuple(lines))

    if sev.is_higher_than(incident.severity):
        old = incident.severity.name if incident.severity else "none"
        return Plan("raised", incident=IncidentStep.UPDATE, target=incident.id, severity=sev, event=EventAction.TRIGGER,
                    member=MemberStep.JOIN, timeline=(("severity_change", f"severity raised {old} -> {sev.name}: "
                                              f"{alert.display_title}"),))
    repage = decision.repage_seconds
    if incident.pending_triggers:
        return Plan("attached", incident=IncidentStep.ATTACH, target=incident.id, member=MemberStep.JOIN,
                    timeline=(("alert", f"{alert.display_title} ({sev.name}): a page is already queued"),))
    if repage and incident.last_paged_at is not None and now - incident.last_paged_at >= timedelta(seconds=repage):
        return Plan("repaged", incident=IncidentStep.UPDATE, target=incident.id, severity=incident.severity,
                    event=EventAction.TRIGGER,
                    member=MemberStep.JOIN, timeline=(("alert", f"{alert.display_title} ({sev.name}): re-paged after "
                                              f"the re-page interval of {repage}s"),))
    if incident.last_paged_at is None and not incident.any_trigger_attempted and not incident.pending_triggers:
        # The incident exists but its page never went out (an earlier trigger was dropped): page now.
        return Plan("repaged", incident=IncidentStep.UPDATE, target=incident.id, severity=incident.severity,
                    event=EventAction.TRIGGER,
                    member=MemberStep.JOIN, timeline=(("alert", f"{alert.display_title} ({sev.name}): paging"),))
    why = f"re-page interval {repage}s not elapsed" if repage else "no re-page interval set"
    return Plan("attached", incident=IncidentStep.ATTACH, target=incident.id, member=MemberStep.JOIN,
                timeline=(("alert", f"{alert.display_title} ({sev.name}): attached to the open incident ({why})"),))


def _reopen(alert: Alert, sev: Severity, recent: IncidentState, window: int, now: datetime) -> Plan:
    """The resolution did not hold: the same incident opens again and pages at once (its first page already went
    out, so the rule's pending window is not applied again), at the higher of its severity and the alert's (the
    bridge never lowers an incident's severity itself)."""
    severity = sev if sev.is_higher_than(recent.severity) or recent.severity is None else recent.severity
    after = _span((now - recent.resolved_at).total_seconds()) if recent.resolved_at else "shortly"
    text = (f"the resolution did not hold: {alert.display_title} ({sev.name}) fired again {after} after the resolution "
            f"(reopen_within {_span(window)}); incident {recent.id} reopened at {severity.name}")
    return Plan("reopened", incident=IncidentStep.REOPEN, target=recent.id, severity=severity,
                event=EventAction.TRIGGER, member=MemberStep.JOIN, timeline=(("reopen", text),))


def _span(seconds: float) -> str:
    """'45 s', '4 min', '2 h 5 min': for timeline texts (here, so the pure policy imports no renderer)."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    hours, minutes = divmod(whole // 60, 60)
    return f"{hours} h {minutes} min" if hours and minutes else (f"{hours} h" if hours else f"{minutes} min")


def _resolve(alert: Alert, incident: IncidentState | None) -> Plan:
    if incident is None:
        return Plan("nothing_to_resolve")
    if incident.firing_members > 1:
        return Plan("member_recovered", incident=IncidentStep.ATTACH, target=incident.id, member=MemberStep.RECOVER,
                    timeline=(("alert", f"recovered: {alert.display_title}; {incident.firing_members - 1} attached "
                               "group(s) still firing"),))
    if not incident.any_trigger_attempted:
        # Recovered before its trigger ever left (inside a pending window, or while the outbox was backed up):
        # the trigger is dropped rather than re-opening the incident, and nothing needs resolving.
        return Plan("resolved_before_page", incident=IncidentStep.RESOLVE, target=incident.id, supersede_pending=True,
                    member=MemberStep.RECOVER,
                    timeline=(("resolution", "recovered before the page was sent: the page was dropped"),))
    return Plan("resolved", incident=IncidentStep.RESOLVE, target=incident.id, event=EventAction.RESOLVE,
                supersede_pending=True, member=MemberStep.RECOVER,
                timeline=(("resolution", f"recovered: {alert.display_title}"),))


def _last(decision: Decision) -> str:
    return decision.reasons[-1] if decision.reasons else ""
