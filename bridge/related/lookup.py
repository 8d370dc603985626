"""Find related past incidents across sources within a time budget, and say what was found.

`find_related` asks every source at once (threads: the sources block on HTTP), waits at most the budget, and
ranks whatever arrived, route tests left out (`is_test_page`: a test page is recent and on the same service, so
it would rank first while saying nothing of the problem). A source that fails or is too slow is named in
`missing_sources` with a short reason; the others' results stand. Rendering (`to_json`, `format_note`,
`format_text`) is pure.

The lookup of a stored incident (`related_for_incident`, used by the CLI, the API and the related-note
follow-up) turns stored rows into candidates and queries (`incident_candidate`, `store_candidates`,
`query_for_alert`), builds the sources the settings allow (`build_sources`: always our own store; PagerDuty and
Datadog when keyed), and keeps the part of a result the post-mortem needs (`related_to_details`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.delivery.pagerduty_rest import TEST_INCIDENT_KEY_PREFIX
from bridge.related.score import DEFAULT_WEIGHTS, Candidate, Index, Query, Scored, Weights, merge
from bridge.related.sources import DatadogSource, PagerDutySource, Source, StoreSource, failure_reason

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.model import Alert
    from bridge.store import Store

# Time kept back from the budget for merging and ranking (ranking 10,000 candidates takes a few ms; building
# the index of candidates not yet cached takes longer).
RANK_RESERVE_SECONDS = 0.3


# How a test page is labelled, wherever it is found: `notify test` titles its incidents "[TEST] ..." (see
# `route_test_title`; PagerDuty REST prefixes any test title lacking it) and keys them TEST_INCIDENT_KEY_PREFIX...;
# an Events API test trigger carries the same title label, which PagerDuty and Datadog show as the incident's title.
TEST_PAGE_LABEL = "[TEST]"


def is_test_page(candidate: Candidate) -> bool:
    """Whether a candidate is a route test rather than an incident: it would rank first (same service, recent),
    and it says nothing about the problem at hand."""
    return (candidate.title.lstrip().upper().startswith(TEST_PAGE_LABEL)
            or bool(candidate.dedup_key and candidate.dedup_key.startswith(TEST_INCIDENT_KEY_PREFIX)))


@dataclass(frozen=True)
class RelatedResult:
    """Ranked related incidents, the sources that answered and those that did not (name, reason)."""

    results: list[Scored]
    missing_sources: list[tuple[str, str]] = field(default_factory=list)
    sources_used: list[str] = field(default_factory=list)
    candidates_considered: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON body of `--json` and `GET /api/v1/incidents/<key>/related`."""
        return {
            "results": [s.to_dict() for s in self.results],
            "missing_sources": [{"source": n, "reason": r} for n, r in self.missing_sources],
            "sources_used": list(self.sources_used),
            "candidates_considered": self.candidates_considered,
        }


def find_related(query: Query, sources: Sequence[Source], *, now: datetime, limit: int = 5,
                 budget_seconds: float = 3.0, weights: Weights = DEFAULT_WEIGHTS,
                 tag_document_frequency: Mapping[str, float] | None = None) -> RelatedResult:
    """Fetch candidates from all `sources` concurrently, leave out test pages (`is_test_page`), merge them, rank
    them for `query`.

    The call returns within about `budget_seconds` whatever the sources do: a source still running then is
    reported as "timed out" and left to finish on its own (each source bounds its requests by the same
    deadline, so it does not linger).
    """
    start = time.monotonic()  # the sources' deadlines are monotonic too
    fetch_deadline = start + max(0.1, budget_seconds - RANK_RESERVE_SECONDS)
    by_source: dict[str, list[Candidate]] = {}
    missing: list[tuple[str, str]] = []
    pool = ThreadPoolExecutor(max_workers=max(1, len(sources)), thread_name_prefix="related")
    try:
        futures: dict[Future[list[Candidate]], str] = {
            pool.submit(s.fetch, query, deadline=fetch_deadline): s.name for s in sources}
        wait(futures, timeout=max(0.0, fetch_deadline - time.monotonic()))
        for fut, name in futures.items():
            if not fut.done():
                fut.cancel()
                missing.append((name, f"timed out after {budget_seconds:g} s"))
            elif fut.exception() is not None:
                missing.append((name, failure_reason(fut.exception())))  # type: ignore[arg-type]
            else:
                by_source.setdefault(name, []).extend(c for c in fut.result() if not is_test_page(c))
    finally:
        # Do not wait for stragglers: the budget is the promise.
        pool.shutdown(wait=False, cancel_futures=True)
    candidates = merge(by_source)
    index = Index(candidates, tag_document_frequency=tag_document_frequency)
    results = index.rank(query, now=now, limit=limit, weights=weights)
    used = [s.name for s in sources if s.name in by_source]
    return RelatedResult(results, missing, used, len(candidates))


def _when(c: Candidate) -> str:
    return c.created_at.strftime("%Y-%m-%d") if c.created_at else "date unknown"


def format_note(result: RelatedResult, *, limit: int = 5) -> str:
    """A PagerDuty note: the top related incidents with links and reasons, and the sources not searched."""
    lines = ["Related past incidents (incident-bridge):"]
    if not result.results:
        lines.append("none found.")
    for n, s in enumerate(result.results[:limit], 1):
        c = s.candidate
        link = f" {c.url}" if c.url else ""
        lines.append(f"{n}. {c.title} ({_when(c)}, {'/'.join(c.all_sources)}){link}")
        lines.append(f"   score {s.score:.2f}: {s.explanation}")
    if result.missing_sources:
        lines.append("Not searched: " + "; ".join(f"{n} ({r})" for n, r in result.missing_sources) + ".")
    return "\n".join(lines)


def format_text(result: RelatedResult) -> str:
    """The CLI's human output."""
    out = []
    if not result.results:
        out.append("No related incidents found.")
    for n, s in enumerate(result.results, 1):
        c = s.candidate
        out.append(f"{n}. [{s.score:.2f}] {c.title}")
        out.append(f"   {_when(c)}  {c.status or ''}  {', '.join(c.all_sources)}  {c.url or c.id}".rstrip())
        out.append(f"   {s.explanation}")
    searched = ", ".join(result.sources_used) or "none"
    out.append(f"Searched: {searched} ({result.candidates_considered} incidents).")
    for name, reason in result.missing_sources:
        out.append(f"Missing source {name}: {reason}.")
    return "\n".join(out)


# ------------------------------------------------------------------------------- stored incidents, sources


def _from_iso(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def incident_candidate(incident: dict[str, Any], first_alert: dict[str, Any] | None) -> Candidate:
    """A stored incident as a related-incident candidate."""
    alert = (first_alert or {}).get("alert") or {}
    fields = alert.get("fields") or {}
    monitor = fields.get("monitor_id") or fields.get("alertname") or (f"rule:{incident['rule']}"
                                                                      if incident.get("rule") else None)
    return Candidate(
        source="bridge", id=str(incident["id"]), title=incident["title"],
        created_at=_from_iso(incident["opened_at"]),
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


def related_to_details(result: RelatedResult) -> list[dict[str, Any]]:
    """The part of a related-incident result kept with the incident (for the post-mortem)."""
    out = []
    for scored in result.results:
        c = scored.candidate
        out.append({"title": c.title, "created_at": c.created_at.astimezone(UTC).isoformat()
                    if c.created_at else None, "explanation": scored.explanation, "url": c.url,
                    "sources": list(c.all_sources), "score": round(float(scored.score), 3)})
    return out
