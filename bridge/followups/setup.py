"""`incident_setup` (after a trigger of a declared incident, P0/P1 by default, and of security incidents): find
the PagerDuty incident, set its priority and urgency, note the role assignment with each role's duties and the
decision's reasons, request a responder for every role, and arm the escalation timers."""

from __future__ import annotations

from typing import Any

from bridge.followups.context import FollowUpContext
from bridge.followups.roles import declared, holder_text, role_note
from bridge.followups.schedule import arm_escalations, queue_related_note
from bridge.model import Severity
from bridge.rules.model import Ruleset


def incident_setup(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """Priority, urgency, the role note, responder requests and escalation timers."""
    payload = job["payload"]
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None or incident["status"] != "open":
        return
    ruleset = ctx.holder.current
    severity = Severity.parse(payload["severity"])
    is_declared = declared(ruleset, severity)
    wanted = list(payload.get("roles") or [])
    if not is_declared:
        # P2/P3 never page at night: only the roles the process engages immediately whatever the severity.
        wanted = [r for r in wanted if r in _immediate_roles(ruleset, set(payload.get("categories") or ()))]
    now = ctx.clock()
    holders = {role: holder_text(ruleset, role) for role in wanted}
    if wanted:
        ctx.store.merge_incident_details(incident["id"], roles_requested=holders)
    if ctx.rest is None:
        ctx.store.add_timeline(incident["id"], now, "decision",
                               "roles to engage: " + ", ".join(wanted) + " (PAGERDUTY_API_TOKEN is not set: "
                               "no priority, note or responder requests sent)", "incident-bridge")
        return
    pd_id, _url = ctx.pd_incident(incident)
    priority_id = None
    if is_declared:
        priority_id = ctx.rest.priority_for(severity.name, ruleset.settings.priority_names)
    ctx.rest.set_priority_and_urgency(pd_id, priority_id, severity.urgency)
    if not wanted:
        ctx.record(incident["id"], now, "decision", "no responder requests: " + (
            f"the paging policy names no roles for {severity.name}" if is_declared else
            f"{severity.name} declares no incident; the page goes to the service's escalation policy through "
            "the Events API"))
        return
    note = role_note(ruleset, severity, wanted, payload.get("reasons") or [], payload.get("rule"))
    if ctx.rest.add_note(pd_id, note, f"[incident-bridge:setup:{incident['id']}:{severity.name}]"):
        ctx.store.add_timeline(incident["id"], now, "note", f"role assignment noted ({severity.name})",
                               "incident-bridge", "PagerDuty note")
    targets: list[tuple[str, str]] = []
    for role in wanted:
        spec = ruleset.roles.get(role)
        if spec is None or spec.target is None:
            continue
        targets.append(ctx.rest.resolve_target(spec.target, role=role))
    if targets:
        message = (f"incident-bridge: {severity.name} {incident['title'][:200]}. You are requested as "
                   + ", ".join(wanted) + ". See the incident notes for your duties.")
        outcome = ctx.rest.request_responders(pd_id, targets, message)
        status = getattr(outcome, "status", str(outcome))
        if status == "unsupported":
            ctx.store.add_timeline(incident["id"], now, "responder_request",
                                   "responder requests are not available on this PagerDuty account (402): "
                                   "roles are listed in the note only", "incident-bridge")
        else:
            if status != "dry_run":  # a dry run requested nobody; its step says whom it would
                for role in wanted:
                    ctx.store.add_timeline(incident["id"], now, "responder_request",
                                           f"{role} requested: {holders[role]}", holders[role],
                                           "PagerDuty responder request")
            arm_escalations(ctx, incident, ruleset, wanted, now, reopen=int(payload.get("reopen") or 0))
    if is_declared:
        queue_related_note(ctx, incident, now)


def _immediate_roles(ruleset: Ruleset, categories: set[str]) -> set[str]:
    """Roles engaged immediately at any severity (InfoSec for security)."""
    out: set[str] = set()
    for cat in categories & {"security", "breach"}:
        out.update(ruleset.paging.category_roles.get(cat, ()))
    return out
