"""`related_note`: related past incidents, noted on the PagerDuty incident (after the page, never before)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.followups.context import FollowUpContext
from bridge.related.lookup import format_note, related_for_incident, related_to_details


def related_note(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """Look up related past incidents and note the top 5 on the PagerDuty incident."""
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None:
        return
    sources = ctx.related_sources() if ctx.related_sources else None
    result = related_for_incident(ctx.store, ctx.settings, incident,
                                  now=datetime.fromtimestamp(ctx.clock(), tz=UTC), sources=sources)
    ctx.store.merge_incident_details(incident["id"], related=related_to_details(result),
                                     related_missing=[list(m) for m in result.missing_sources])
    now = ctx.clock()
    ctx.store.add_timeline(incident["id"], now, "note",
                           f"related incidents looked up: {len(result.results)} found"
                           + (f"; missing sources: {', '.join(n for n, _ in result.missing_sources)}"
                              if result.missing_sources else ""), "incident-bridge")
    if ctx.rest is not None and result.results:
        pd_id, _ = ctx.pd_incident(incident)
        ctx.rest.add_note(pd_id, format_note(result), f"[incident-bridge:related:{incident['id']}]")
