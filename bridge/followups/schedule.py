"""What queues follow-ups, and the dedupe key of each: the jobs a delivered trigger sets off (`after_delivery`),
the escalation timers and the related-incidents note the set-up arms. Every dedupe key format is defined here
(reconciliation's slices too; `reconcile` queues them).

A dedupe key makes a queued follow-up happen once however often what queues it runs again (a trigger delivered
twice, a set-up retried after a crash mid-way): the store keeps at most one job per key, ever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.durations import format_duration
from bridge.followups.context import FollowUpContext
from bridge.followups.roles import declared, holder_text
from bridge.model import Severity
from bridge.rules.model import Ruleset
from bridge.store import JobKind, NewJob

# -- dedupe keys ------------------------------------------------------------------------------------------------


def reopen_note_key(incident_id: int, reopen: int) -> str:
    """One reopen note per reopening of an incident."""
    return f"reopen_note:{incident_id}:{reopen}"


def setup_key(severity: str, reopen: int) -> str:
    """Which set-up of an incident a trigger asks for: one per severity, and again after each reopening."""
    return f"{severity}:{reopen}"


def incident_setup_key(incident_id: int, setup: str) -> str:
    """One set-up per incident and `setup_key`."""
    return f"incident_setup:{incident_id}:{setup}"


def escalation_check_key(incident_id: int, reopen: int, role: str) -> str:
    """One escalation timer per incident, reopening and role."""
    return f"escalation_check:{incident_id}:{reopen}:{role}"


def related_note_key(incident_id: int) -> str:
    """One related-incidents note per incident."""
    return f"related_note:{incident_id}"


def reconcile_key(pass_number: int, cursor: int) -> str:
    """One reconciliation slice per pass and cursor (the id of the last incident before the slice); a pass's first
    slice (cursor 0) is its key, so two workers starting at once queue one pass."""
    return f"reconcile:{pass_number}:{cursor}"


def resend_resolve_key(incident_id: int, pass_number: int) -> str:
    """At most one resend per reconciliation pass of a resolve PagerDuty dropped (a maintenance window)."""
    return f"resend_resolve:{incident_id}:{pass_number}"


def missed_resolve_key(round_number: int) -> str:
    """One missed-resolve check per round (`missed_resolve`): two workers starting at once queue one round."""
    return f"missed_resolve:{round_number}"


# -- after a trigger ----------------------------------------------------------------------------------------------


def after_delivery(ctx: FollowUpContext, job: dict[str, Any]) -> list[NewJob]:
    """The follow-ups of a delivered job, which the delivery worker queues in the transaction that records the
    delivery: after a trigger, the set-up of the incident it paged (and the reopen note of a reopened one).

    Declared incidents (P0/P1) and security incidents get roles; with the REST API every incident also
    gets the urgency of its severity set explicitly (P2/P3 low: never a page at night). Each follow-up has a
    dedupe key, so a trigger delivered twice (a retry) queues it once.
    """
    incident_id = job.get("incident_id")
    if job.get("kind") != JobKind.EVENT or job.get("action") != "trigger" or incident_id is None:
        return []
    incident = ctx.store.incident_row(incident_id)
    if incident is None:
        return []
    out: list[NewJob] = []
    reopen = len((incident.get("details") or {}).get("reopens") or [])
    if reopen:
        # This trigger re-opened (or de-duplicated into) the PagerDuty incident: say the resolution did not hold.
        out.append(NewJob(JobKind.REOPEN_NOTE, job["dedup_key"], incident_id, {"reopen": reopen}, priority=2,
                          dedupe=reopen_note_key(incident_id, reopen)))
    # The severity this trigger paged at, from the event the pipeline built out of the decision.
    details = ((job.get("payload") or {}).get("payload") or {}).get("custom_details") or {}
    sev_name = details.get("severity")
    severity = Severity.parse(sev_name) if sev_name else None
    ruleset = ctx.holder.current
    categories = set(details.get("categories") or ())
    engages_roles = declared(ruleset, severity) or bool(categories & {"security", "breach"})
    if severity is None or not (engages_roles or ctx.rest is not None):
        return out
    # Once per severity, and again after each reopening: PagerDuty then usually has a new incident, whose
    # roles, note and timers are set up afresh (on the same incident every step finds its work done).
    setup = setup_key(str(sev_name), reopen)
    out.append(NewJob(JobKind.INCIDENT_SETUP, job["dedup_key"], incident_id,
                      {"severity": sev_name, "roles": details.get("roles") or [],
                       "reasons": details.get("reasons") or [], "rule": details.get("rule"),
                       "categories": sorted(categories), "reopen": reopen, "setup_key": setup},
                      priority=1, dedupe=incident_setup_key(incident_id, setup)))
    return out


# -- from the set-up ----------------------------------------------------------------------------------------------


def arm_escalations(ctx: FollowUpContext, incident: dict[str, Any], ruleset: Ruleset, roles: list[str], now: float,
                    *, reopen: int = 0) -> None:
    """Queue an `escalation_check` timer for each requested role that has a backup and an escalation delay."""
    for role in roles:
        spec = ruleset.roles.get(role)
        if spec is None or spec.backup is None or not spec.escalate_after_seconds:
            continue
        # A reopened incident's roles are requested again, so their timers run again.
        payload: dict[str, Any] = {"role": role, "after": spec.escalate_after_seconds}
        if reopen:
            payload = {"reopen": reopen, **payload}
        due = now + spec.escalate_after_seconds
        queued = ctx.store.enqueue(JobKind.ESCALATION_CHECK, incident["dedup_key"], incident["id"], payload, now,
                                   due, priority=1, dedupe=escalation_check_key(incident["id"], reopen, role))
        if queued:  # once per timer, however often the set-up runs
            at = datetime.fromtimestamp(due, tz=UTC).strftime("%H:%M:%S UTC")
            ctx.record(incident["id"], now, "escalation_timer",
                       f"escalates at +{format_duration(spec.escalate_after_seconds)} ({at}) to "
                       f"{spec.backup.describe()} when the {role} ({holder_text(ruleset, role)}) has not "
                       "accepted by then", spec.backup.describe(), "escalation timer")


def queue_related_note(ctx: FollowUpContext, incident: dict[str, Any], now: float) -> None:
    """Queue the related-incidents note of a declared incident (after the page, never before)."""
    ctx.store.enqueue(JobKind.RELATED_NOTE, incident["dedup_key"], incident["id"], {}, now, priority=6,
                      dedupe=related_note_key(incident["id"]))
