"""Views built from the store for the follow-ups: related-incident candidates and post-mortem facts.

The pure parts (ranking, rendering) live in `bridge.related` and `bridge.postmortem`; this module only turns
stored rows into their input values, and builds the related-incident sources the settings allow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bridge.config import Settings
from bridge.model import Alert, CostFacts, Severity
from bridge.postmortem import IncidentFacts, RelatedIncident, TimelineEvent
from bridge.related import Candidate, Query, find_related
from bridge.related.lookup import RelatedResult
from bridge.related.sources import DatadogSource, PagerDutySource, Source, StoreSource
from bridge.store import Store

log = logging.getLogger(__name__)


def _when(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def incident_candidate(incident: dict[str, Any], first_alert: dict[str, Any] | None) -> Candidate:
    """A stored incident as a related-incident candidate."""
    alert = (first_alert or {}).get("alert") or {}
    fields = alert.get("fields") or {}
    monitor = fields.get("monitor_id") or fields.get("alertname") or (f"rule:{incident['rule']}"
                                                                      if incident.get("rule") else None)
    return Candidate(
        source="bridge", id=str(incident["id"]), title=incident["title"],
        created_at=_when(incident["opened_at"]),
        services=tuple(s for s in [incident.get("service")] if s),
        tags=tuple(incident.get("tags") or ()),
        signature=f"{incident['title']}\n{alert.get('message', '')}".strip(),
        monitor_id=str(monitor) if monitor else None,
        url=(incident.get("pagerduty") or {}).get("html_url"),
        pagerduty_id=(incident.get("pagerduty") or {}).get("id"),
        dedup_key=incident["dedup_key"], status=incident["status"], severity=incident.get("severity"),
    )


def store_candidates(store: Store, limit: int = 20000) -> list[Candidate]:
    """Every stored incident as a candidate (the bridge's own history)."""
    return [incident_candidate(incident, first) for incident, first in store.incidents_with_first_alert(limit)]


def query_for_alert(alert: Alert) -> Query:
    """A related-incident query for an alert not yet paged (`related --payload`)."""
    monitor = alert.fields.get("monitor_id") or alert.fields.get("alertname")
    return Query(id=f"payload:{alert.source_event_id}", title=alert.title,
                 created_at=alert.received_at, services=tuple(s for s in [alert.service] if s),
                 tags=tuple(f"{k}:{v}" if v else k for k, v in alert.tags),
                 signature=f"{alert.title}\n{alert.message}", monitor_id=monitor or None,
                 dedup_key=alert.group_key)


def build_sources(settings: Settings, store: Store, *, window_days: int | None = None) -> list[Source]:
    """The sources this configuration allows: always our own store; PagerDuty and Datadog when keyed."""
    if window_days is None:
        window_days = settings.related_window_days
    sources: list[Source] = [StoreSource(lambda: store_candidates(store), window_days)]
    if settings.api_token:
        import pagerduty

        client = pagerduty.RestApiV2Client(settings.api_token.reveal(), default_from=settings.pd_from or None,
                                           base_url=settings.api_url, verify=settings.tls_verify())
        sources.append(PagerDutySource(client, window_days=window_days))
    if settings.dd_api_key and settings.dd_app_key:
        from datadog_api_client import Configuration

        cfg = Configuration(host=settings.datadog_api_url or f"https://api.{settings.dd_site}")
        cfg.api_key["apiKeyAuth"] = settings.dd_api_key.reveal()
        cfg.api_key["appKeyAuth"] = settings.dd_app_key.reveal()
        # datadog-api-client 2.62 raises KeyError for the documented "v2." spelling; the short key works.
        cfg.unstable_operations["search_incidents"] = True
        sources.append(DatadogSource(cfg, window_days=window_days))
    return sources


def related_for_incident(store: Store, settings: Settings, incident: dict[str, Any], *, now: datetime,
                         sources: list[Source] | None = None, budget_seconds: float = 3.0) -> RelatedResult:
    """Related past incidents of one stored incident."""
    alerts = store.list_alerts(incident_id=incident["id"], limit=1)
    query = Query.from_candidate(incident_candidate(incident, alerts[0] if alerts else None))
    return find_related(query, sources if sources is not None else build_sources(settings, store), now=now,
                        budget_seconds=budget_seconds)


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


def related_to_details(result: RelatedResult) -> list[dict[str, Any]]:
    """The part of a related-incident result kept with the incident (for the post-mortem)."""
    out = []
    for scored in result.results:
        c = scored.candidate
        out.append({"title": c.title, "created_at": c.created_at.astimezone(UTC).isoformat()
                    if c.created_at else None, "explanation": scored.explanation, "url": c.url,
                    "sources": list(c.all_sources), "score": round(float(scored.score), 3)})
    return out
