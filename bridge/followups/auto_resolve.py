"""`auto_resolve` (a timer): resolve an incident whose source never sends recoveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.errors import Reschedule
from bridge.followups.context import FollowUpContext


def auto_resolve(ctx: FollowUpContext, job: dict[str, Any]) -> None:
    """Resolve an incident whose source never sends recoveries, once no alert came for the rule's time."""
    incident = ctx.store.incident_row(job["incident_id"])
    if incident is None or incident["status"] != "open":
        return
    details = incident.get("details") or {}
    after = float(details.get("auto_resolve_seconds") or 0)
    last = datetime.fromisoformat(incident["last_alert_at"]).timestamp()
    now = ctx.clock()
    if after and now < last + after:
        raise Reschedule(last + after)
    ctx.store.resolve_incident(incident["id"], now,
                               f"auto-resolved: no alert for {int(after)}s and the source sends no recovery",
                               send_resolve=True)
