"""Reconciliation at start: the incidents we believe open (or resolved) compared with PagerDuty, and drift
repaired."""

from __future__ import annotations

import logging

from bridge.followups.context import FollowUpContext
from bridge.store import JobKind

log = logging.getLogger(__name__)


def reconcile(ctx: FollowUpContext, days: float = 7.0) -> int:
    """Compare the incidents we believe open (or resolved) with PagerDuty and repair drift. Run at start.

    - open here, but PagerDuty has no open incident for the dedup key: a human resolved it there; mark it
      resolved here too (and draft the post-mortem);
    - resolved here, but open in PagerDuty: our resolve was lost (a crash, a dead-lettered event); send
      it again.
    Returns the number of incidents repaired.
    """
    if ctx.rest is None:
        return 0
    now = ctx.clock()
    repaired = 0
    for incident in ctx.store.recent_incidents(now - days * 86400):
        if not ctx.store.triggers_delivered(incident["id"]):
            continue
        open_there = ctx.rest.find_incident(incident["dedup_key"])
        if incident["status"] == "open" and open_there is None:
            if ctx.store.resolve_incident(incident["id"], now, "resolved in PagerDuty (found by "
                                          "reconciliation at start)", send_resolve=False):
                repaired += 1
        elif incident["status"] == "resolved" and open_there is not None \
                and ctx.store.last_event_action(incident["id"]) != "resolve":
            ctx.store.enqueue(JobKind.EVENT, incident["dedup_key"], incident["id"],
                              {"event_action": "resolve", "dedup_key": incident["dedup_key"]}, now,
                              action="resolve", priority=0)
            ctx.store.add_timeline(incident["id"], now, "resolution", "resolve re-sent: PagerDuty still "
                                   "had the incident open (found by reconciliation at start)",
                                   "incident-bridge")
            repaired += 1
    if repaired:
        log.warning("reconciliation repaired %d incident(s)", repaired)
    return repaired
