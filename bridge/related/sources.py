"""Where past incidents come from: PagerDuty, Datadog Incident Management, and the bridge's own store.

Each source turns its provider's records into `Candidate`s and implements
`fetch(query, *, deadline) -> list[Candidate]`, where `deadline` is a `time.monotonic()` value: every request
is given at most the time left, and paging stops when it runs out (a partial list is better than none: the
lookup runs while a responder waits). Errors propagate; `lookup.find_related` names the failed source and keeps
the others' results. `failure_reason` turns an error into a short, bounded reason without secrets.

A source object is meant to own its client: it caps the client's retries and sets its timeout per request.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bridge.related.score import Candidate, Query

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Source(Protocol):
    """A place to look for past incidents."""

    name: str

    def fetch(self, query: Query, *, deadline: float) -> list[Candidate]:
        """Candidates that may be related to `query`, fetched before `deadline` (monotonic seconds)."""
        ...


class DeadlineExceeded(TimeoutError):
    """The time budget ran out before the source could ask anything."""


def _remaining(deadline: float, cap: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0.05:
        raise DeadlineExceeded("no time left")
    return min(cap, left)


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed source: the HTTP status or the kind of failure, never the message body.

    Bounded on purpose: the text goes into PagerDuty notes and logs, and provider error messages can echo
    request details.
    """
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    # Client libraries wrap the transport error (pagerduty.Error "from" httpx2.ReadTimeout): look down the chain.
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 5:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return "timed out"
    try:
        import pagerduty

        if isinstance(exc, pagerduty.Error):
            return "network error"
    except ImportError:  # pragma: no cover - the dependency is declared
        pass
    name = type(exc).__name__
    if "Timeout" in name:
        return "timed out"
    if any(part in name for part in ("Connect", "Network", "Protocol", "MaxRetry", "Transport")):
        return "network error"
    return f"error ({name})"


# PagerDuty ------------------------------------------------------------------------------------------------------

# GET /incidents: "Maximum range is 6 months" for since/until (pagerduty.md §2.5). We stay a little under.
PD_MAX_RANGE = timedelta(days=180)
# Classic pagination: limit ≤ 100 and offset + limit ≤ 10000, else 400 (pagerduty.md §2.5).
PD_PAGE_LIMIT = 100
PD_MAX_OFFSET_PLUS_LIMIT = 10_000
# The Event Intelligence endpoints (pagerduty.md §2.6); 402/403 when the account lacks the package.
PD_INTELLIGENCE = ("past_incidents", "related_incidents")


def cap_pagerduty_client(client: Any, timeout: float) -> None:
    """Make a `pagerduty.RestApiV2Client` fail fast instead of waiting: the lookup has its own time budget.

    `pagerduty` retries 429 forever unless `retry[429]` is a positive number (`retry[429] = 0` also means
    forever, pdpyras#139), sleeping 3, 6, 12 s...; network errors are retried 3 times (pagerduty.md §3.5).
    One 429 retry after a short sleep, no network retry, and a short timeout.
    """
    client.retry[429] = 1
    client.sleep_timer = min(float(getattr(client, "sleep_timer", 1.5)), 0.25)
    client.max_network_attempts = 0
    client.max_http_attempts = 2
    client.timeout = timeout


def pagerduty_candidate(incident: Mapping[str, Any], *, service_names: Mapping[str, str] | None = None,
                        hint: str | None = None) -> Candidate:
    """A `Candidate` from a PagerDuty incident object (list, past or related item)."""
    service = incident.get("service") or {}
    service_id = service.get("id")
    name = (service_names or {}).get(service_id or "") or service.get("summary")
    title = str(incident.get("title") or incident.get("summary") or "")
    body = incident.get("body") or {}
    details = body.get("details") if isinstance(body, Mapping) else None
    priority = incident.get("priority") or {}
    return Candidate(
        source="pagerduty", id=str(incident["id"]), title=title,
        created_at=_parse_time(incident.get("created_at")),
        services=(str(name),) if name else (),
        signature=f"{title}\n{details}" if isinstance(details, str) and details else title,
        url=incident.get("html_url") or incident.get("self"),
        pagerduty_id=str(incident["id"]), dedup_key=incident.get("incident_key") or None,
        status=incident.get("status"),
        severity=(priority.get("summary") if isinstance(priority, Mapping) else None) or incident.get("urgency"),
        hint=hint,
    )


class PagerDutySource:
    """Past incidents of the same and related services from the PagerDuty REST API.

    - `GET /incidents` with `service_ids[]` over `window_days`, in ≤ 6-month `since`/`until` slices, newest
      first, 100 per page within offset + limit ≤ 10000, at most `max_pages` pages.
    - When the query is a PagerDuty incident: `GET /incidents/{id}/past_incidents` and `/related_incidents`
      (PagerDuty's own matching). A 402/403 means the account lacks the package: remembered for the life of this
      object, so later lookups do not ask again, and our own matching is all there is.

    `service_ids`: PagerDuty service ids to search when the query's services are not in `service_map`.
    `service_map`: bridge service name -> PagerDuty service ids ("checkout" -> ["PSVC001"]); it also names the
    PagerDuty services of candidates in the bridge's terms, so "same service" works across sources.
    """

    name = "pagerduty"

    def __init__(self, client: Any, service_ids: Sequence[str] = (), window_days: int = 90, *,
                 service_map: Mapping[str, Sequence[str]] | None = None, timeout: float = 5.0,
                 max_pages: int = 10, intelligence_limit: int = 20, clock: Clock = _utcnow) -> None:
        """Wrap `client` (a `pagerduty.RestApiV2Client` this source owns) and cap its retries."""
        self.client = client
        self.service_ids = tuple(service_ids)
        self.window = timedelta(days=window_days)
        self.service_map = {k.lower(): tuple(v) for k, v in (service_map or {}).items()}
        self.service_names = {sid: name for name, ids in self.service_map.items() for sid in ids}
        self.timeout = timeout
        self.max_pages = max_pages
        self.intelligence_limit = intelligence_limit
        self.clock = clock
        self.unavailable: dict[str, str] = {}  # endpoint -> why (remembered 402/403)
        self._lock = threading.Lock()
        cap_pagerduty_client(client, timeout)

    def _get(self, path: str, params: Mapping[str, Any], deadline: float) -> Any:
        # The client reads `timeout` per request; give each request only the time left.
        self.client.timeout = _remaining(deadline, self.timeout)
        return self.client.get(path, params=dict(params))

    def fetch(self, query: Query, *, deadline: float) -> list[Candidate]:
        """PagerDuty's own related incidents (when available) plus the incidents of the query's services."""
        out: list[Candidate] = []
        if query.pagerduty_id:
            out.extend(self._intelligence(query.pagerduty_id, deadline))
        out.extend(self._incidents(query, deadline))
        return out

    def service_ids_for(self, query: Query) -> tuple[str, ...]:
        """PagerDuty service ids to search for `query`."""
        ids = [sid for s in query.services for sid in self.service_map.get(s.lower(), ())]
        return tuple(dict.fromkeys(ids)) or self.service_ids

    def _incidents(self, query: Query, deadline: float) -> list[Candidate]:
        from pagerduty import HttpError

        now = self.clock()
        start = now - self.window
        ids = self.service_ids_for(query)
        out: list[Candidate] = []
        pages = 0
        # `until` is exclusive and sent in whole seconds: `now` truncated would leave out an incident opened in
        # this very second (the sibling a storm opened a moment ago), so the first window ends at the next second.
        until = now.replace(microsecond=0) + timedelta(seconds=1)
        while until > start and pages < self.max_pages:
            since = max(start, until - PD_MAX_RANGE)
            offset = 0
            while pages < self.max_pages and offset + PD_PAGE_LIMIT <= PD_MAX_OFFSET_PLUS_LIMIT:
                params: dict[str, Any] = {"since": _iso(since), "until": _iso(until), "limit": PD_PAGE_LIMIT,
                                          "offset": offset, "sort_by": "created_at:desc"}
                if ids:
                    params["service_ids"] = list(ids)  # the client sends it as service_ids[]
                if pages and deadline - time.monotonic() <= 0.05:
                    return out  # partial: what we have is better than nothing
                r = self._get("/incidents", params, deadline)
                pages += 1
                if not r.is_success:
                    raise HttpError(f"GET /incidents: HTTP {r.status_code}", r)
                body = r.json()
                items = body.get("incidents") or []
                out.extend(pagerduty_candidate(i, service_names=self.service_names) for i in items)
                if not body.get("more") or not items:
                    break
                offset += len(items)
            until = since
        return out

    def _intelligence(self, incident_id: str, deadline: float) -> list[Candidate]:
        out: list[Candidate] = []
        for endpoint in PD_INTELLIGENCE:
            with self._lock:
                if endpoint in self.unavailable:
                    continue
            params: dict[str, Any] = {"limit": self.intelligence_limit} if endpoint == "past_incidents" else {
                "additional_details": ["incident"]}
            try:
                r = self._get(f"/incidents/{incident_id}/{endpoint}", params, deadline)
            except DeadlineExceeded:
                raise
            except Exception as exc:  # our own matching still works without PagerDuty's opinion
                log.info("pagerduty %s for %s failed: %s", endpoint, incident_id, failure_reason(exc))
                continue
            if r.status_code in (402, 403):
                # "needs the Event Intelligence package or Digital Operations plan" (pagerduty.md §2.6)
                with self._lock:
                    self.unavailable[endpoint] = f"HTTP {r.status_code}"
                log.info("pagerduty %s not available on this account (HTTP %s); using our own matching",
                         endpoint, r.status_code)
                continue
            if not r.is_success:
                log.info("pagerduty %s for %s: HTTP %s", endpoint, incident_id, r.status_code)
                continue
            body = r.json()
            for item in body.get(endpoint) or []:
                inc = item.get("incident") or {}
                if not inc.get("id"):
                    continue
                if endpoint == "past_incidents":
                    score = item.get("score")
                    hint = "PagerDuty: similar past incident" + (f" (score {score:.0f})"
                                                                 if isinstance(score, int | float) else "")
                else:
                    rels = item.get("relationships") or []
                    if isinstance(rels, Mapping):  # the schema says array, the example shows an object
                        rels = [rels]
                    kinds = sorted({str(rel.get("type", "")).replace("_", " ") for rel in rels if rel.get("type")})
                    hint = "PagerDuty: related" + (f" ({', '.join(kinds)})" if kinds else "")
                out.append(pagerduty_candidate(inc, service_names=self.service_names, hint=hint))
        return out


# Datadog --------------------------------------------------------------------------------------------------------

# The official example's query (datadog.md §7.2). A time facet (`from_ts`/`to_ts`) in the query answers 400
# (datadog-api-client-python#1695), so the window is applied client-side on `created`.
DD_QUERY = "state:(active OR stable OR resolved)"
DD_PAGE_SIZE = 100  # "The maximum allowed value is 100" (IncidentsApi.search_incidents docstring)


def _field_value(fields: Mapping[str, Any], name: str) -> Any:
    f = fields.get(name)
    if f is None:
        return None
    if isinstance(f, Mapping):
        return f.get("value")
    return getattr(f, "value", None)


def datadog_candidate(data: Mapping[str, Any], *, app_url: str) -> Candidate:
    """A `Candidate` from one `IncidentResponseData` (as a dict: `id`, `attributes`)."""
    a = data.get("attributes") or {}
    fields = a.get("fields") or {}
    services = _field_value(fields, "services")
    if isinstance(services, str):
        services = [services]
    teams = _field_value(fields, "teams")
    if isinstance(teams, str):
        teams = [teams]
    title = str(a.get("title") or "")
    extra = [str(v) for v in (_field_value(fields, "summary"), _field_value(fields, "root_cause")) if v]
    public_id = a.get("public_id")
    severity = a.get("severity") or _field_value(fields, "severity")
    tags = tuple(f"team:{t}" for t in (teams or [])) + tuple(f"service:{s}" for s in (services or []))
    return Candidate(
        source="datadog", id=str(data.get("id")), title=title, created_at=_parse_time(a.get("created")),
        services=tuple(str(s) for s in (services or [])), tags=tags,
        signature="\n".join([title, *extra]),
        url=f"{app_url}/incidents/{public_id}" if public_id is not None else None,
        datadog_id=str(data.get("id")), datadog_public_id=str(public_id) if public_id is not None else None,
        status=a.get("state") or _field_value(fields, "state"), severity=str(severity) if severity else None,
    )


class DatadogSource:
    """Past incidents from Datadog Incident Management (`IncidentsApi.search_incidents`, an unstable operation).

    `configuration` is a `datadog_api_client.Configuration` (keys from DD_API_KEY/DD_APP_KEY, `host=` to point
    it elsewhere); the source keeps its own copy, with `v2.search_incidents` enabled and its retries off (the
    lookup has a time budget; datadog.md §7.1). Newest first (`-created`), pages of 100 until `window_days` is
    passed or `max_pages` pages.
    """

    name = "datadog"

    def __init__(self, configuration: Any, window_days: int = 90, *, timeout: float = 5.0, max_pages: int = 5,
                 query: str = DD_QUERY, app_url: str | None = None, clock: Clock = _utcnow) -> None:
        """Copy `configuration` and enable the unstable search operation on the copy."""
        self.configuration = copy.deepcopy(configuration)
        # Calling it disabled raises ApiValueError("Unstable operation 'search_incidents' is disabled"). The short
        # key on purpose: in 2.62.0 `unstable_operations["v2.search_incidents"] = True` stores the value and then
        # raises KeyError (`_UnstableOperations.__setitem__` falls into its for/else after the direct hit).
        self.configuration.unstable_operations["search_incidents"] = True
        self.configuration.enable_retry = False
        self.window = timedelta(days=window_days)
        self.timeout = timeout
        self.max_pages = max_pages
        self.query = query
        site = (getattr(self.configuration, "server_variables", None) or {}).get("site", "datadoghq.com")
        self.app_url = (app_url or f"https://app.{site}").rstrip("/")
        self.clock = clock

    def fetch(self, query: Query, *, deadline: float) -> list[Candidate]:
        """Incidents created within the window, newest first (the query itself is excluded later, by id)."""
        from datadog_api_client import ApiClient
        from datadog_api_client.v2.api.incidents_api import IncidentsApi
        from datadog_api_client.v2.model.incident_search_sort_order import IncidentSearchSortOrder

        since = self.clock() - self.window
        out: list[Candidate] = []
        offset = 0
        with ApiClient(self.configuration) as api_client:
            api = IncidentsApi(api_client)
            for page in range(self.max_pages):
                if page and deadline - time.monotonic() <= 0.05:
                    break  # partial
                self.configuration.request_timeout = _remaining(deadline, self.timeout)
                response = api.search_incidents(query=self.query, sort=IncidentSearchSortOrder.CREATED_DESCENDING,
                                                page_size=DD_PAGE_SIZE, page_offset=offset)
                body = response.to_dict()
                data = body.get("data") or {}
                items = (data.get("attributes") or {}).get("incidents") or []
                older = False
                for item in items:
                    c = datadog_candidate(item.get("data") or {}, app_url=self.app_url)
                    if c.created_at is not None and c.created_at < since:
                        older = True
                        continue
                    out.append(c)
                pagination = (body.get("meta") or {}).get("pagination") or {}
                next_offset = pagination.get("next_offset")
                if older or not items or next_offset is None or next_offset <= offset:
                    break
                offset = int(next_offset)
        return out


# The bridge's own store -----------------------------------------------------------------------------------------


class StoreSource:
    """The bridge's own history, as candidates (the caller maps its store records to `Candidate`s)."""

    name = "bridge"

    def __init__(self, list_incidents: Callable[[], Iterable[Candidate]], window_days: int | None = None, *,
                 clock: Clock = _utcnow) -> None:
        """`list_incidents` returns the stored incidents; `window_days` drops older ones (None keeps all)."""
        self.list_incidents = list_incidents
        self.window = timedelta(days=window_days) if window_days is not None else None
        self.clock = clock

    def fetch(self, query: Query, *, deadline: float) -> list[Candidate]:
        """All stored incidents within the window."""
        items = list(self.list_incidents())
        if self.window is None:
            return items
        since = self.clock() - self.window
        return [c for c in items if c.created_at is None or c.created_at >= since]
