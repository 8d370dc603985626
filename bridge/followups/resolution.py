"""`resolution_note` (queued with each resolution): the process's resolution checklist for a declared incident,
addressed to the roles that hold each step, with the final stakeholder update (sent as a PagerDuty status update
when the rules opt in, a draft in the note otherwise). The texts are written by `resolution_text` (pure)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bridge.errors import DeliveryError, Reschedule
from bridge.followups.context import FollowUpContext
from bridge.followups.resolution_text import (
    CHECKLIST,
    FINAL_UPDATE_STATUS_UPDATE,
    FinalUpdateState,
    final_update_mode,
    final_update_text,
    fired_monitors,
    resolution_note_text,
)
from bridge.followups.roles import declared, holder_text
from bridge.model import Severity
from bridge.postmortem import postmortem_facts
from bridge.rules.model import Ruleset
from bridge.store import RESOLUTION_NOTE_DELAY

log = logging.getLogger(__name__)


def resolution_note(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """The process's resolution steps for a declared incident, one note addressed to the roles that hold them,
    with the final stakeholder update: sent first as a PagerDuty status update when the rules opt in
    (`final_update: status_update`), else (and on a 402) a draft inside the note.

    Idempotent: the note carries a marker per resolution; the status update, which PagerDuty cannot list
    back, is recorded in the incident's details (`stakeholder_update`) as soon as PagerDuty accepts it and is
    never sent twice for one resolution (a crash between PagerDuty's answer and that write is the only window).
    """
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None:
        return
    number = int(job["payload"].get("resolution") or 1)
    now = ctx.clock()
    if incident["status"] != "resolved":
        ctx.store.add_timeline(incident["id"], now, "resolution_note", f"resolution checklist {number} not "
                               "posted: the incident reopened before it went out", "incident-bridge")
        return
    ruleset = ctx.holder.current
    severity = Severity.parse(incident["severity"]) if incident.get("severity") else None
    if not declared(ruleset, severity):
        return
    details = incident.get("details") or {}
    recorded = details.get("roles_requested") or {}
    holders = {role: recorded.get(role) or holder_text(ruleset, role) for role, _ in CHECKLIST}
    facts = postmortem_facts(ctx.store, incident)
    draft = final_update_text(facts, reopens=len(details.get("reopens") or []))
    mode = final_update_mode(ruleset.settings.final_update, _rule_extra(ruleset, incident.get("rule")))
    if ctx.rest is None:
        ctx.store.merge_incident_details(incident["id"], stakeholder_update={
            "resolution": number, "mode": mode, "state": "skipped", "text": draft})
        ctx.store.add_timeline(incident["id"], now, "resolution_note", "resolution checklist not posted "
                               "(PAGERDUTY_API_TOKEN is not set: REST steps skipped)", "incident-bridge")
        ctx.store.add_timeline(incident["id"], now, "final_update", "final stakeholder update drafted, not "
                               "sent (PAGERDUTY_API_TOKEN is not set); the draft is in the incident's details",
                               "incident-bridge")
        return
    if not ctx.paged(incident["id"]):
        ctx.store.add_timeline(incident["id"], now, "resolution_note", "resolution checklist not posted: no "
                               "page of this incident reached PagerDuty", "incident-bridge")
        return
    if ctx.store.event_unfinished(incident["id"], "resolve"):
        raise Reschedule(now + RESOLUTION_NOTE_DELAY)  # after the resolve, never on a still-open incident
    pd_id, _ = ctx.pd_incident(incident, include_resolved=True)
    state = _final_update(ctx, incident, pd_id, number, mode, draft, holders, now)
    note = resolution_note_text(facts, holders=holders, monitors=fired_monitors(
        ctx.store.incident_alerts(incident["id"])), final_update=state, draft=draft,
        postmortem_link=ctx.postmortem_link(incident), resolution=number)
    if ctx.rest.add_note(pd_id, note, f"[incident-bridge:resolution:{incident['id']}:{number}]"):
        ctx.store.add_timeline(incident["id"], now, "resolution_note",
                               "resolution checklist noted for the " + ", ".join(r for r, _ in CHECKLIST),
                               "; ".join(f"{role}: {holders[role]}" for role, _ in CHECKLIST),
                               "PagerDuty note")


def _final_update(ctx: FollowUpContext, incident: dict[str, Any], pd_id: str, number: int, mode: str, draft: str,
                  holders: dict[str, str], now: float) -> FinalUpdateState:
    """Send (or keep as a draft) the final stakeholder update of resolution `number`; what became of it."""
    prior = (incident.get("details") or {}).get("stakeholder_update") or {}
    if prior.get("resolution") == number and prior.get("state") in ("sent", "unsupported", "refused", "drafted"):
        return prior["state"]  # type: ignore[no-any-return]  # a retry: decided (and sent) already
    assert ctx.rest is not None
    state: FinalUpdateState = "drafted"
    refusal = ""
    if mode == FINAL_UPDATE_STATUS_UPDATE:
        try:
            sent = ctx.rest.create_status_update(pd_id, draft)
            # A dry run posted nothing: the update stays a draft in the note, as it is described.
            state = "sent" if sent == "sent" else "drafted" if sent == "dry_run" else "unsupported"
        except DeliveryError as exc:
            if exc.retryable:
                raise  # 429, 5xx, network: the job is retried, and nothing was recorded as sent
            # A lasting refusal (an account may answer 403 rather than 402 for a missing entitlement) must not
            # keep the checklist from the roles: the update falls back to the note, like a 402.
            state, refusal = "refused", exc.message
            log.warning("incident %s: the final stakeholder update was refused as a status update; it stays a "
                        "draft in the resolution note: %s", incident["id"], exc.message)
    ctx.store.merge_incident_details(incident["id"], stakeholder_update={
        "resolution": number, "mode": mode, "state": state, "text": draft,
        "at": datetime.fromtimestamp(now, tz=UTC).isoformat()})
    comms = holders.get("Communications Lead", "")
    if state == "sent":
        ctx.store.add_timeline(incident["id"], now, "final_update", "final stakeholder update sent as a "
                               "PagerDuty status update", comms, "PagerDuty status update")
    elif state == "refused":
        ctx.store.add_timeline(incident["id"], now, "final_update", "warning: PagerDuty refused the final "
                               f"stakeholder update as a status update ({refusal}); the draft is in the "
                               "resolution note for the Communications Lead", comms,
                               "drafted in the resolution note")
    elif state == "unsupported":
        # The one warning of this incident (the client logs one per process, see Abilities): never retried.
        ctx.store.add_timeline(incident["id"], now, "final_update", "warning: the final stakeholder update "
                               "was not sent as a status update: this PagerDuty account lacks the ability "
                               "(HTTP 402); the draft is in the resolution note for the Communications Lead",
                               comms, "drafted in the resolution note")
    else:
        why = "final_update: note" if mode != FINAL_UPDATE_STATUS_UPDATE else "a dry run posts no status update"
        ctx.store.add_timeline(incident["id"], now, "final_update", "final stakeholder update drafted in the "
                               f"resolution note ({why})", comms, "drafted in the resolution note")
    return state


def _rule_extra(ruleset: Ruleset, name: str | None) -> dict[str, Any] | None:
    """The extra settings (`final_update`, ...) of the rule named `name`, if the ruleset still has it."""
    for rule in ruleset.rules:
        if rule.name == name:
            return dict(rule.extra)
    return None
