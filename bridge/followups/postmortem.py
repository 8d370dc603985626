"""`postmortem`: draft the post-mortem of a resolved P0/P1 incident (`bridge.postmortem.draft`, as the CLI and the
API do) and note where to find it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.followups.context import FollowUpContext
from bridge.followups.dry_run import DRY_RUN_INCIDENT
from bridge.postmortem import draft, needs_postmortem, postmortem_facts


def postmortem(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """Draft the post-mortem of a resolved incident when the process asks for one, and note the link."""
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None or incident["status"] != "resolved":
        return  # reopened before the draft was due: the next resolution queues it again
    ruleset = ctx.holder.current
    facts = postmortem_facts(ctx.store, incident)
    p2_flag = ruleset.settings.postmortem_p2 or any(
        (rule.extra.get("postmortem") and rule.name in facts.rules) for rule in ruleset.rules)
    if not needs_postmortem(facts.peak_severity, p2_flag=p2_flag):
        return
    now = ctx.clock()
    # draft's custom_template refuses a template outside the rules directory, even if the ruleset holds one.
    markdown = draft(ctx.store, ctx.holder.path, ruleset.settings, incident, datetime.fromtimestamp(now, tz=UTC),
                     facts=facts)
    ctx.store.save_postmortem(incident["id"], markdown, now)
    link = ctx.postmortem_link(incident)
    ctx.store.add_timeline(incident["id"], now, "note", "post-mortem draft written", "incident-bridge")
    pd_id = (incident.get("pagerduty") or {}).get("id") or (DRY_RUN_INCIDENT if ctx.dry_run else None)
    if ctx.rest is not None and pd_id:
        ctx.rest.add_note(pd_id,
                          f"Post-mortem draft ready: {link} (or `incident-bridge postmortem "
                          f"{incident['dedup_key']}`).", f"[incident-bridge:postmortem:{incident['id']}]")
