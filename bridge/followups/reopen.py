"""`reopen_note` (after the trigger of a reopened incident): the resolution did not hold; links the previous
PagerDuty incident when PagerDuty opened a new one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.followups.context import FollowUpContext
from bridge.followups.resolution_text import PagerDutyRef, Reopening, reopen_note_text


def reopen_note(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """Say on PagerDuty that the resolution did not hold, linking the previous PagerDuty incident when
    PagerDuty opened a new one for the same dedup key (a resolved incident cannot reopen there)."""
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None:
        return
    number = int(job["payload"]["reopen"])
    reopens = (incident.get("details") or {}).get("reopens") or []
    if not 0 < number <= len(reopens):
        return
    entry = reopens[number - 1]
    previous = entry.get("pagerduty") or {}
    reopening = Reopening(number, datetime.fromisoformat(entry["at"]),
                          datetime.fromisoformat(entry["resolved_at"]) if entry.get("resolved_at") else None,
                          PagerDutyRef(previous["id"], previous.get("html_url") or "") if previous.get("id")
                          else None, bool(entry.get("pagerduty_kept_open")))
    now = ctx.clock()
    if ctx.rest is None:
        ctx.store.add_timeline(incident["id"], now, "note", "reopening not noted on PagerDuty "
                               "(PAGERDUTY_API_TOKEN is not set: REST steps skipped)", "incident-bridge")
        return
    # While open, only an open PagerDuty incident is ours (the previous one is resolved); resolved again
    # meanwhile, the newest one.
    pd_id, _ = ctx.pd_incident(incident, include_resolved=incident["status"] != "open")
    if reopening.previous is not None and reopening.previous.id == pd_id:
        reopening = Reopening(number, reopening.at, reopening.resolved_at, reopening.previous, kept_open=True)
    text = reopen_note_text(incident["title"], reopening, severity=incident.get("severity") or "-")
    if ctx.rest.add_note(pd_id, text, f"[incident-bridge:reopen:{incident['id']}:{number}]"):
        where = "on the same PagerDuty incident" if reopening.kept_open else (
            f"on the new PagerDuty incident {pd_id}; previous one: {reopening.previous.id}"
            if reopening.previous is not None else f"on PagerDuty incident {pd_id}")
        ctx.store.add_timeline(incident["id"], now, "note", f"resolution did not hold: noted {where}",
                               "incident-bridge", "PagerDuty note")
