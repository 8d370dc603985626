"""The post-mortem's facts from the store: what the bridge recorded about one incident, as `IncidentFacts`.

This is the one part of `bridge.postmortem` that reads the store; the rendering stays pure.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.model import CostFacts, Severity
from bridge.postmortem.model import IncidentFacts, RelatedIncident, TimelineEvent

if TYPE_CHECKING:
    from bridge.store import Store


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def postmortem_facts(store: Store, incident: dict[str, Any]) -> IncidentFacts:
    """What the bridge recorded about an incident, as the post-mortem renderer's input."""
    timeline = tuple(
        TimelineEvent(at=datetime.fromisoformat(e["at"]), kind=e["kind"], description=e["description"],
                      personnel=e["personnel"], actions=e["actions"])
        for e in store.incident_timeline(incident["id"]))
    alerts = store.incident_alerts(incident["id"])
    severities = [Severity.parse(a["severity"]) for a in alerts if a.get("severity")]
    highest = min(severities, key=lambda s: s.rank) if severities else None
    cost = None
    for a in alerts:
        raw_cost = (a.get("alert") or {}).get("cost")
        if raw_cost:
            cost = CostFacts.from_dict(raw_cost)
    details = incident.get("details") or {}
    related = None
    if "related" in details:
        related = tuple(
            RelatedIncident(title=r.get("title", ""), date=_when(r.get("created_at")),
                            similarity=r.get("explanation", ""), link=r.get("url") or "")
            for r in details["related"])
    roles = details.get("roles_requested") or {}
    severity = Severity.parse(incident["severity"]) if incident.get("severity") else (highest or Severity.P3)
    return IncidentFacts(
        key=incident["dedup_key"], title=incident["title"], severity=severity, status=incident["status"],
        opened_at=datetime.fromisoformat(incident["opened_at"]), highest_severity=highest,
        resolved_at=_when(incident.get("resolved_at")), service=incident.get("service"),
        source=incident.get("source", ""), pagerduty_incident_id=(incident.get("pagerduty") or {}).get("id"),
        pagerduty_url=(incident.get("pagerduty") or {}).get("html_url"),
        categories=frozenset(incident.get("categories") or ()),
        dimensions={k: float(v) for k, v in (incident.get("dimensions") or {}).items()}, cost=cost,
        rules=tuple(sorted({a["rule"] for a in alerts if a.get("rule")})), timeline=timeline, related=related,
        roles=dict(roles),
    )
