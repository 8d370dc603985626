"""A loopback fake of the Datadog Incidents search API (v2) and monitor lookup (v1), for integration tests.

Endpoints (the shapes `datadog-api-client` 2.62.0 parses; `../shared/reference/datadog.md` §7):
- `GET /api/v2/incidents/search?query=...&sort=-created&page[size]=&page[offset]=` -> `IncidentSearchResponse`
  (`data.type = "incidents_search_results"`, `data.attributes = {total, facets, incidents: [{data: ...}]}`,
  `meta.pagination = {offset, next_offset, size}`).
- `GET /api/v1/monitor/{id}` -> a `Monitor`; with `group_states` (`all`, or a comma list of `alert`, `warn`,
  `no data`, the values the published parameter documents; anything else answers 400) the monitor also carries
  `state.groups`: `{<group>: MonitorStateGroup}` (`name`, `status` among `Alert, Ignored, No Data, OK, Skipped,
  Unknown, Warn`, and the `last_*_ts` epoch seconds), as `datadog-api-client`'s `MonitorState` parses it. Script a
  group's status with `set_group_state(monitor_id, group, status)`; the monitor's `overall_state` follows the worst
  group.

Both need the `DD-API-KEY` and `DD-APPLICATION-KEY` headers: a missing one answers 401, a wrong one 403
(`{"errors": [...]}`, Datadog's error shape). Missing/malformed requests are recorded in `invalid_requests`.

Search queries: facets joined by ` AND `, each `facet:value` or `facet:(v1 OR v2)`, as the client's docstring
describes (`state:(active OR stable) AND severity:(SEV-1 OR SEV-2)`). Facets: `state`, `severity`,
`customer_impacted`, `title` (substring), `public_id`, and any custom field (`services:web`, `teams:sre`).
A `from_ts`/`to_ts` term answers 400, as the real API does (datadog-api-client-python#1695). Results are
sorted `-created` (newest first) unless `sort=created`. Every query string received is kept in `search_queries`.

Usage::

    from tests.support.fakes.datadog import FakeDatadog

    with FakeDatadog() as dd:
        dd.add_incident("Checkout errors", severity="SEV-1", services=["checkout"])
        dd.add_monitor({"id": 1234, "name": "CPU", "type": "metric alert", "query": "avg(last_5m):... > 90"})
        config = dd.client_configuration()         # host, keys, unstable search_incidents enabled (see below)
        with ApiClient(config) as api:
            IncidentsApi(api).search_incidents(query="services:checkout AND state:active")
        dd.fail(503, times=2)                      # same fault injection as the PagerDuty fake
        dd.assert_no_invalid_requests()

Plain HTTP by default (the Datadog client accepts `http://` hosts); `tls=True` serves HTTPS and
`client_configuration()` then trusts the fake's certificate.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest

from tests.support.fakes.pagerduty import Clock, Fault, LoopbackServer, RecordedRequest, Reply, iso

API_KEY = "fake-dd-api-key"
APP_KEY = "fake-dd-app-key"

SEVERITIES = ("SEV-0", "SEV-1", "SEV-2", "SEV-3", "SEV-4", "SEV-5", "UNKNOWN")
STATES = ("active", "stable", "resolved")
DEFAULT_PAGE_SIZE = 10  # the client's own default for search_incidents_with_pagination
MAX_PAGE_SIZE = 100  # `page[size]` <= 100 (datadog.md §7.2)
# `MonitorOverallStates` (datadog.md: v1/model/monitor_overall_states.py), and the `group_states` parameter's values.
GROUP_STATUSES = ("Alert", "Ignored", "No Data", "OK", "Skipped", "Unknown", "Warn")
GROUP_STATES_PARAM = frozenset({"all", "alert", "warn", "no data"})
_SEVERITY_ORDER = ("OK", "Ignored", "Skipped", "Unknown", "No Data", "Warn", "Alert")

_NAMESPACE = uuid.UUID("6f1c2a7e-43a5-4b9e-9a52-8d2a3c0e7b11")  # deterministic incident UUIDs
_TERM = re.compile(r"^(?P<facet>[\w.-]+):(?:\((?P<many>[^()]*)\)|(?P<one>\"[^\"]*\"|\S+))$")


def _errors(status: int, *messages: str) -> Reply:
    """Datadog's error shape."""
    return Reply(status, {"errors": list(messages)})


class QueryError(ValueError):
    """A search query this fake (and Datadog) cannot parse."""


def parse_query(query: str) -> list[tuple[str, list[str]]]:
    """`state:(active OR stable) AND severity:SEV-1` -> `[("state", ["active", "stable"]), ("severity", ["SEV-1"])]`."""
    terms: list[tuple[str, list[str]]] = []
    text = query.strip()
    if not text or text == "*":
        return terms
    for raw in re.split(r"\s+AND\s+", text):
        match = _TERM.match(raw.strip())
        if not match:
            raise QueryError(f"cannot parse search term {raw!r}")
        facet = match["facet"]
        if facet in ("from_ts", "to_ts"):
            # The UI's time-range terms are refused by the API (datadog-api-client-python#1695).
            raise QueryError(f"{facet} is not a valid search facet")
        if match["many"] is not None:
            values = [v.strip().strip('"') for v in re.split(r"\s+OR\s+", match["many"]) if v.strip()]
        else:
            values = [match["one"].strip('"')]
        terms.append((facet, values))
    return terms


class FakeDatadog(LoopbackServer):
    """Fake Datadog API: incident search (v2) and monitors (v1), with the shared fault injection.

    Constructor arguments (all optional): `api_key`, `app_key` (the values the fake accepts), `incidents`
    (dicts passed to `add_incident` as keyword arguments), `monitors` (dicts passed to `add_monitor`), `clock`,
    `tls`.
    """

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        app_key: str = APP_KEY,
        incidents: Iterable[Mapping[str, Any]] = (),
        monitors: Iterable[Mapping[str, Any]] = (),
        clock: Clock | None = None,
        tls: bool = False,
    ) -> None:
        super().__init__(tls=tls, clock=clock)
        self.api_key = api_key
        self.app_key = app_key
        self.incidents: list[dict[str, Any]] = []  # IncidentResponseData objects, as served
        self.monitors: dict[int, dict[str, Any]] = {}
        self.groups: dict[int, dict[str, dict[str, Any]]] = {}  # monitor id -> group name -> MonitorStateGroup
        self.search_queries: list[str] = []
        for incident in incidents:
            self.add_incident(**incident)
        for monitor in monitors:
            self.add_monitor(monitor)

    def __enter__(self) -> FakeDatadog:
        self.start()
        return self

    # -- data ---------------------------------------------------------------------------------------------

    def add_incident(
        self,
        title: str,
        *,
        severity: str = "SEV-2",
        state: str = "active",
        services: Iterable[str] = (),
        teams: Iterable[str] = (),
        created: float | None = None,
        resolved: float | None = None,
        customer_impacted: bool = False,
        customer_impact_scope: str | None = None,
        fields: Mapping[str, Mapping[str, Any]] | None = None,
        incident_id: str | None = None,
        **attributes: Any,
    ) -> dict[str, Any]:
        """Add an incident (an `IncidentResponseData` dict) and return it.

        `created`/`resolved` are epoch seconds (default: now / None). `fields` adds or overrides custom fields
        (`{"root_cause": {"type": "textbox", "value": "disk"}}`); other keyword arguments are extra attributes.
        """
        with self.lock:
            public_id = len(self.incidents) + 1
            created_at = iso(self.clock() if created is None else created)
            service_list, team_list = list(services), list(teams)
            # The default fields of a Datadog incident, as in the client's recorded search response.
            all_fields: dict[str, Any] = {
                "severity": {"type": "dropdown", "value": severity},
                "state": {"type": "dropdown", "value": state},
                "detection_method": {"type": "dropdown", "value": "unknown"},
                "root_cause": {"type": "textbox", "value": None},
                "summary": {"type": "textbox", "value": None},
                "services": {"type": "autocomplete", "value": service_list or None},
                "teams": {"type": "autocomplete", "value": team_list or None},
            }
            all_fields.update({k: dict(v) for k, v in (fields or {}).items()})
            data: dict[str, Any] = {
                "id": incident_id or str(uuid.uuid5(_NAMESPACE, str(public_id))),
                "type": "incidents",
                "attributes": {
                    "title": title,
                    "public_id": public_id,
                    "created": created_at,
                    "modified": created_at,
                    "detected": created_at,
                    "declared": created_at,
                    "resolved": iso(resolved) if resolved is not None else None,
                    "severity": severity,
                    "state": state,
                    "customer_impacted": customer_impacted,
                    "customer_impact_scope": customer_impact_scope,
                    "customer_impact_start": None,
                    "customer_impact_end": None,
                    "customer_impact_duration": 0,
                    "time_to_detect": 0,
                    "time_to_internal_response": 0,
                    "time_to_repair": 0,
                    "time_to_resolve": 0,
                    "fields": all_fields,
                    "visibility": "organization",
                    "case_id": None,
                    "archived": None,
                    "notification_handles": None,
                    **attributes,
                },
            }
            self.incidents.append(data)
            return data

    def add_monitor(self, monitor: Mapping[str, Any]) -> dict[str, Any]:
        """Add a monitor (a `Monitor` dict; needs `id`; `type`/`query` get defaults) and return it."""
        with self.lock:
            now = iso(self.clock())
            full: dict[str, Any] = {
                "name": f"monitor {monitor['id']}",
                "type": "metric alert",
                "query": "avg(last_5m):avg:system.cpu.user{*} > 90",
                "message": "",
                "tags": [],
                "priority": None,
                "options": {"thresholds": {"critical": 90.0}, "notify_no_data": False},
                "overall_state": "OK",
                "multi": False,
                "created": now,
                "modified": now,
                **dict(monitor),
            }
            self.monitors[int(full["id"])] = full
            return full

    def set_group_state(self, monitor_id: int, group: str, status: str) -> None:
        """Set one group's status (`Alert`, `Warn`, `No Data`, `OK`, ...) on a monitor added with `add_monitor`."""
        if status not in GROUP_STATUSES:
            raise ValueError(f"{status!r} is not a MonitorOverallStates value")
        with self.lock:
            monitor = self.monitors[int(monitor_id)]
            now = int(self.clock())
            groups = self.groups.setdefault(int(monitor_id), {})
            previous = groups.get(group, {})
            entry = {"name": group, "status": status,
                     "last_triggered_ts": previous.get("last_triggered_ts", now if status == "Alert" else None),
                     "last_resolved_ts": now if status == "OK" else previous.get("last_resolved_ts"),
                     "last_nodata_ts": now if status == "No Data" else previous.get("last_nodata_ts"),
                     "last_notified_ts": previous.get("last_notified_ts", now)}
            groups[group] = {k: v for k, v in entry.items() if v is not None}
            monitor["overall_state"] = max((g["status"] for g in groups.values()), key=_SEVERITY_ORDER.index)

    def client_configuration(self, **kwargs: Any) -> Any:
        """A `datadog_api_client.Configuration` for this fake, with `v2.search_incidents` enabled.

        Retries stay off (the client default) so fault-injection tests see each answer; kwargs are set as
        attributes on the configuration (e.g. `enable_retry=True`, `request_timeout=2`).
        """
        from datadog_api_client import Configuration

        config = Configuration(host=self.url)
        config.api_key["apiKeyAuth"] = self.api_key
        config.api_key["appKeyAuth"] = self.app_key
        # The short key on purpose: in 2.62.0 `unstable_operations["v2.search_incidents"] = True` stores the
        # value and then raises KeyError (`_UnstableOperations.__setitem__` falls into its for/else after the
        # direct hit). test_fakes.py pins that behaviour.
        config.unstable_operations["search_incidents"] = True
        if self.tls:
            config.ssl_ca_cert = self.ca_file
        for name, value in kwargs.items():
            setattr(config, name, value)
        return config

    # -- serving ------------------------------------------------------------------------------------------

    def _api_of(self, path: str) -> str:
        return "datadog"

    def _fault_reply(self, request: RecordedRequest, fault: Fault) -> Reply:
        headers = dict(fault.headers)
        body = fault.body
        if body is None:
            body = {"errors": ["Rate limit exceeded" if fault.status == 429 else "Internal Server Error"]}
        if fault.status == 429:
            # Datadog's rate-limit headers, which the client's retry honours (datadog.md §7.1).
            headers.setdefault("x-ratelimit-limit", "100")
            headers.setdefault("x-ratelimit-period", "60")
            headers.setdefault("x-ratelimit-remaining", "0")
            headers.setdefault("x-ratelimit-reset", "1")
        return Reply(fault.status, body, headers)

    def _handle(self, request: RecordedRequest) -> Reply:
        api_key, app_key = request.header("DD-API-KEY"), request.header("DD-APPLICATION-KEY")
        if not api_key or not app_key:
            missing = [n for n, v in (("DD-API-KEY", api_key), ("DD-APPLICATION-KEY", app_key)) if not v]
            return self._reject(request, _errors(401, "Unauthorized"), [f"missing header {m}" for m in missing])
        if api_key != self.api_key or app_key != self.app_key:
            request.outcome = "forbidden"
            return _errors(403, "Forbidden")
        if request.method == "GET" and request.path == "/api/v2/incidents/search":
            return self._search(request)
        monitor = re.fullmatch(r"/api/v1/monitor/(\d+)", request.path)
        if request.method == "GET" and monitor:
            found = self.monitors.get(int(monitor[1]))
            if found is None:
                request.outcome = "not_found"
                return _errors(404, "Monitor not found")
            wanted = (request.query.get("group_states") or [None])[0]
            if wanted is None:
                return Reply(200, found)
            asked = {w.strip() for w in wanted.split(",")}
            if not asked or not asked <= GROUP_STATES_PARAM:
                return self._reject(request, _errors(400, "Invalid group_states"),
                                    [f"group_states={wanted!r}: use all, or alert, warn, no data"])
            groups = self.groups.get(int(monitor[1]), {})
            if "all" not in asked:
                groups = {k: g for k, g in groups.items() if g["status"].lower() in asked}
            return Reply(200, {**found, "state": {"groups": groups}})
        return self._reject(request, _errors(404, "Not found"), [f"the fake has no {request.method} {request.path}"])

    def _search(self, request: RecordedRequest) -> Reply:
        q = request.query
        if "query" not in q:
            return self._reject(request, _errors(400, "query is required"), ["missing query parameter"])
        query = q["query"][0]
        self.search_queries.append(query)
        try:
            terms = parse_query(query)
            size = int(q.get("page[size]", [DEFAULT_PAGE_SIZE])[0])
            offset = int(q.get("page[offset]", ["0"])[0])
        except (QueryError, ValueError) as error:
            return self._reject(request, _errors(400, str(error)), [str(error)])
        if not 1 <= size <= MAX_PAGE_SIZE or offset < 0:
            problem = f"page[size] must be 1..{MAX_PAGE_SIZE} and page[offset] >= 0"
            return self._reject(request, _errors(400, problem), [problem])
        sort = q.get("sort", ["-created"])[0]
        if sort not in ("created", "-created"):
            return self._reject(request, _errors(400, f"invalid sort {sort!r}"), [f"invalid sort {sort!r}"])
        matched = [i for i in self.incidents if all(self._matches(i, f, v) for f, v in terms)]
        matched.sort(
            key=lambda i: (i["attributes"]["created"], i["attributes"]["public_id"]), reverse=sort == "-created"
        )
        page = matched[offset : offset + size]
        return Reply(
            200,
            {
                "data": {
                    "type": "incidents_search_results",
                    "attributes": {
                        "total": len(matched),
                        "facets": self._facets(matched),
                        "incidents": [{"data": incident} for incident in page],
                    },
                },
                # `size` is the page size asked for and `next_offset` = offset + size (the client model's docstrings).
                "meta": {"pagination": {"offset": offset, "next_offset": offset + size, "size": size}},
            },
        )

    @staticmethod
    def _matches(incident: Mapping[str, Any], facet: str, values: list[str]) -> bool:
        attributes = incident["attributes"]
        wanted = [v.lower() for v in values]
        if facet == "title":
            return any(v in str(attributes["title"]).lower() for v in wanted)
        if facet in ("state", "severity", "public_id", "customer_impacted"):
            return str(attributes.get(facet)).lower() in wanted
        field = attributes.get("fields", {}).get(facet.removeprefix("fields."))
        if field is None:
            return False
        value = field.get("value")
        have = value if isinstance(value, list) else [value]
        return any(str(v).lower() in wanted for v in have if v is not None)

    @staticmethod
    def _facets(incidents: list[dict[str, Any]]) -> dict[str, Any]:
        """`state` and `severity` counts over the matches (`IncidentSearchResponseFieldFacetData` items)."""

        def counts(name: str, known: Iterable[str]) -> list[dict[str, Any]]:
            seen = [str(i["attributes"].get(name)) for i in incidents]
            names = list(dict.fromkeys([*known, *seen]))
            return [{"name": n, "count": seen.count(n)} for n in names]

        return {"state": counts("state", STATES), "severity": counts("severity", SEVERITIES)}


@pytest.fixture
def fake_datadog() -> Iterator[FakeDatadog]:
    """A started `FakeDatadog` (import this name into a conftest or test module)."""
    with FakeDatadog() as fake:
        yield fake
