"""`escalation_check` (a timer): the process says the Incident Coordinator and Communications Lead must be
reached; when their request is not accepted in time, request their backup and note it."""

from __future__ import annotations

from typing import Any

from bridge.followups.context import FollowUpContext
from bridge.followups.roles import holder_text


def escalation_check(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """Request the backup of a role whose request was not accepted in time, and note it."""
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None or incident["status"] != "open" or ctx.rest is None:
        return
    role = job["payload"]["role"]
    ruleset = ctx.holder.current
    spec = ruleset.roles.get(role)
    if spec is None or spec.target is None or spec.backup is None:
        return
    pd_id, _ = ctx.pd_incident(incident)
    state = ctx.rest.responder_state(pd_id, ctx.rest.resolve_target(spec.target, role=role))
    now = ctx.clock()
    if state == "accepted":
        ctx.store.add_timeline(incident["id"], now, "acknowledgement", f"{role} accepted the request",
                               holder_text(ruleset, role))
        return
    backup = ctx.rest.resolve_target(spec.backup, role=f"backup of the {role}")
    minutes = max(1, round(job["payload"].get("after", 0) / 60))
    outcome = ctx.rest.request_responders(pd_id, [backup], f"incident-bridge: the {role} did not accept within "
                                          f"{minutes} min; you are requested as their backup.")
    text = (f"Escalation: the {role} ({spec.target.describe()}) did not accept within {minutes} min "
            f"(state: {state}). Requested the backup, {spec.backup.describe()}. The process: when the EM or "
            "PM is unreachable, the Senior Developer must reach them as soon as possible.")
    ctx.rest.add_note(pd_id, text, f"[incident-bridge:escalation:{incident['id']}:{role}]")
    if getattr(outcome, "status", None) == "dry_run":
        return  # nobody was requested: the dry run's steps say whom it would
    ctx.store.add_timeline(incident["id"], now, "escalation", text, spec.backup.describe(),
                           "PagerDuty responder request (backup)")
