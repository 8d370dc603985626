"""Every PagerDuty REST API v2 step the bridge takes for an incident: idempotent, rate-limited, one retry owner.

The Events API opens the incident (`bridge.delivery.events`); this module does what the Events API cannot:
set the priority (and urgency), request the process's roles as responders, add the role/setup notes, read who
accepted, post the final stakeholder update as a status update, page a test incident for `incident-bridge notify
test`, and list incidents for reconciliation.

Design points (each cited where it applies):

- ONE `pagerduty.RestApiV2Client` per `PagerDutyRest`. Its own retries are capped so that our persisted outbox
  stays the only retry owner (reference/pagerduty.md §3.5): at most one quick retry of a 429, no network retry,
  no 5xx retry. A caller that gets a retryable `DeliveryError` re-queues the job with its own back-off.
- A client-side sliding-window limiter keeps us under PagerDuty's 960 requests/min per key (§2.7). When it is
  exhausted we raise a retryable `DeliveryError(reason="rate_limited")` instead of sleeping in the worker.
- Every step is idempotent so a retried job never duplicates anything: responders already requested are
  skipped (read back from `GET /incidents/{id}`), notes carry a marker and are skipped when present, a priority
  or urgency already set is not PUT again.
- A 402 (the account lacks an ability, §2.2, §2.3) degrades: it is remembered per capability in `Abilities`,
  logged once, and the step reports "unsupported" instead of failing the page.
- Errors are `DeliveryError(retryable, reason, status)` with a bounded reason (a metric label): rate_limited,
  server_error, network, tls, timeout, rejected, misconfigured, not_found, unsupported, unexpected_status. Messages
  name the operation and PagerDuty's reason, never the API token (the library's own 401 text carries a
  truncated key, so it is never passed on, and exceptions are raised `from None`).
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx2
import pagerduty

from bridge.config import Settings
from bridge.delivery.events import TEST_INCIDENT_KEY_PREFIX, TEST_TITLE_PREFIX, classify, host_of, transport_error
from bridge.errors import ConfigError, DeliveryError
from bridge.rules.model import Target

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# PagerDuty REST API v2: "960 requests/min" per account key / user / app (reference/pagerduty.md §2.7).
REST_REQUESTS_PER_MINUTE = 960
RATE_WINDOW_SECONDS = 60.0
# Classic pagination: maximum `limit` 100, and `offset + limit` must be <= 10000 or the API answers 400 (§2.5).
PAGE_LIMIT = 100
MAX_OFFSET_PLUS_LIMIT = 10_000
# `GET /incidents` since/until: "Maximum range is 6 months and default is 1 month" (§2.5); we page in windows.
LIST_WINDOW = timedelta(days=30)
# "A maximum of 2000 notes can be added to an incident" (§2.4, SCHEMA POST /incidents/{id}/notes).
MAX_NOTES_PER_INCIDENT = 2000
# Note length: neither the SCHEMA (no maxLength on `note.content`) nor reference/pagerduty.md states a limit.
# 25,000 characters is the bridge's own conservative cap (unverified against PagerDuty); notes are trimmed to it.
MAX_NOTE_CHARS = 25_000

# PagerDuty's default priority names start at P1 (the fake's P1..P5 mirror that); the process's severities
# start at P0 (docs/incident-process.md). Priority names are per account, so this is configurable
# (§2.2: "map incident-bridge's P0-P3 to priority IDs by name").
DEFAULT_PRIORITY_NAMES: Mapping[str, str] = {"P0": "P1", "P1": "P2", "P2": "P3", "P3": "P4"}

# A PagerDuty object id such as "PABC123"; anything else in a Target is a name (or email) to look up.
ID_PATTERN = re.compile(r"^P[A-Z0-9]{5,}$")

_REFERENCE_TYPES = {"escalation_policy": "escalation_policy_reference", "user": "user_reference"}
_OPEN_STATUSES = ["triggered", "acknowledged"]

ResponderState = Literal["accepted", "declined", "pending", "absent"]
ResolvedTarget = tuple[str, str]  # (reference type, id), e.g. ("user_reference", "PUSER02")


def route_test_title(role: str) -> str:
    """The title of a route-test incident: unmistakably a test, and says which role it checks."""
    return f"{TEST_TITLE_PREFIX} incident-bridge route test for role {role} — no action needed"


class SlidingWindowLimiter:
    """At most `limit` requests in any `window` seconds of `clock` (PagerDuty counts over a sliding window)."""

    def __init__(self, limit: int = REST_REQUESTS_PER_MINUTE, window: float = RATE_WINDOW_SECONDS,
                 clock: Clock = time.monotonic) -> None:
        """`limit` admissions per `window` seconds."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def try_acquire(self) -> float | None:
        """Take one slot: None when admitted, else the seconds until a slot frees (nothing is taken)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            if len(self._hits) >= self.limit:
                return max(0.0, self._hits[0] + self.window - now)
            self._hits.append(now)
            return None

    @property
    def used(self) -> int:
        """Slots taken in the current window."""
        with self._lock:
            now = self.clock()
            return sum(1 for t in self._hits if t > now - self.window)

    def free(self) -> int:
        """Slots free now (nothing is taken)."""
        with self._lock:
            self._expire(self.clock())
            return self.limit - len(self._hits)

    def seconds_until_free(self, count: int) -> float:
        """Seconds until at least `count` slots (at most `limit`) are free, if nothing else is taken meanwhile."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            short = len(self._hits) - (self.limit - min(count, self.limit))
            return 0.0 if short <= 0 else max(0.0, self._hits[short - 1] + self.window - now)

    def _expire(self, now: float) -> None:
        while self._hits and self._hits[0] <= now - self.window:
            self._hits.popleft()


class Abilities:
    """Capabilities PagerDuty answered 402 for ("Missing Account Ability", §2.7 code 2014), remembered so the
    bridge does not call again, with ONE warning per capability per client."""

    def __init__(self) -> None:
        """Start knowing of no missing capability."""
        self._missing: set[str] = set()
        self._lock = threading.Lock()

    def missing(self, capability: str) -> bool:
        """Whether a 402 for `capability` was seen."""
        with self._lock:
            return capability in self._missing

    def mark_missing(self, capability: str, consequence: str) -> None:
        """Remember a 402 for `capability`; the first time, log one warning saying what the bridge skips."""
        with self._lock:
            if capability in self._missing:
                return
            self._missing.add(capability)
        log.warning("PagerDuty account lacks the %r ability (HTTP 402): %s", capability, consequence)

    @property
    def all_missing(self) -> frozenset[str]:
        """Every capability seen missing."""
        with self._lock:
            return frozenset(self._missing)


@dataclass(frozen=True)
class ResponderOutcome:
    """What `request_responders` did.

    - `requested`: a responder request was sent for `requested` (others in `skipped` were already requested);
    - `already_requested`: nothing was sent, every target had been requested before (a retry);
    - `unsupported`: the account lacks `coordinated_responding` (402); nothing was or will be sent;
    - `dry_run`: nothing was sent, there is no routing key (`bridge.followups.dry_run.DryRunRest`); `requested`
      names the targets a real run would request.
    """

    status: Literal["requested", "already_requested", "unsupported", "dry_run"]
    requested: tuple[ResolvedTarget, ...] = ()
    skipped: tuple[ResolvedTarget, ...] = ()


class PagerDutyRest:
    """The bridge's PagerDuty REST API v2 steps over ONE `pagerduty.RestApiV2Client`.

    Serial use per token is what PagerDuty advises (§2.7); the caches and the limiter are thread-safe anyway.
    Every method raises `DeliveryError` (see the module docstring) and nothing else for API failures.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        verify: ssl.SSLContext | str | bool = True,
        clock: Clock = time.monotonic,
        requests_per_minute: int = REST_REQUESTS_PER_MINUTE,
        rate_limit_retry_sleep: float = 0.25,
        transport: httpx2.BaseTransport | None = None,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        """Build the client from `settings` (api_token, api_url, pd_from, http_timeout_seconds).

        `verify` goes to httpx2: True, False, an `ssl.SSLContext` (tests pass the fake's `ssl_context`) or a CA
        bundle path (file or directory, turned into a context here: httpx2 deprecates `verify=<str>`); `clock`
        drives the limiter;
        `rate_limit_retry_sleep` is the library's base sleep before its single 429 retry (it doubles it once);
        `new_id` makes test-incident keys. Raises ConfigError when the token or PAGERDUTY_FROM is missing.
        """
        if not settings.api_token:
            raise ConfigError("PAGERDUTY_API_TOKEN is not set", hint="set PAGERDUTY_API_TOKEN (or _FILE)")
        if not settings.pd_from:
            # `From` is required on POST /incidents and POST /incidents/{id}/notes (§2, §2.4).
            raise ConfigError("PAGERDUTY_FROM is not set",
                              hint="set PAGERDUTY_FROM to the email of the bridge's PagerDuty user")
        self._token = settings.api_token.reveal()
        self._host = host_of(settings.api_url)
        self.pd_from = settings.pd_from
        kwargs: dict[str, Any] = {"verify": _ssl_verify(verify)}
        if transport is not None:
            kwargs["transport"] = transport
        client = pagerduty.RestApiV2Client(self._token, default_from=settings.pd_from,
                                           base_url=settings.api_url.rstrip("/"), **kwargs)
        # One retry owner (§3.5): the library retries 429 forever unless retry[429] = n > 0
        # (pdpyras#139), sleeping 3, 6, 12 s...; we allow ONE short retry of a 429, no 5xx retry (the REST
        # client's default `retry` is {}), and no network retry. Our outbox re-queues everything else.
        client.retry = {429: 1}
        client.max_http_attempts = 1
        client.max_network_attempts = 0
        client.sleep_timer = rate_limit_retry_sleep
        # A scalar covering connect/read/write/pool (§3.5); the library annotates it as int, httpx2 takes floats.
        client.timeout = settings.http_timeout_seconds  # type: ignore[assignment]
        self._client = client
        self.limiter = SlidingWindowLimiter(requests_per_minute, RATE_WINDOW_SECONDS, clock)
        self.abilities = Abilities()
        self._new_id = new_id
        self._lock = threading.Lock()
        self._requester_id: str | None = None
        self._priorities: dict[str, str] | None = None  # name -> id, most severe first
        self._unknown_priority_names: set[str] = set()
        self._targets: dict[tuple[str, str], ResolvedTarget] = {}
        self._target_names: dict[ResolvedTarget, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> PagerDutyRest:
        """The same as `PagerDutyRest(settings, **kwargs)` (the name `bridge.server.make_rest` calls)."""
        return cls(settings, **kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> PagerDutyRest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def requests_left(self) -> tuple[int, int]:
        """(requests the client-side limiter admits now, its limit per window): for a caller that must leave room
        for others (reconciliation leaves the follow-ups a share)."""
        return self.limiter.free(), self.limiter.limit

    def seconds_until_free(self, count: int) -> float:
        """Seconds until the limiter admits `count` requests (at most its limit) again."""
        return self.limiter.seconds_until_free(count)

    # -- the one request path -------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _request(self, method: str, path: str, what: str, *, params: Mapping[str, Any] | None = None,
                 json: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one request (through the limiter); the decoded JSON object of a 2xx, else DeliveryError.

        `what` names the operation in messages ("get incident PI00001"): never the token, never a query string.
        """
        wait = self.limiter.try_acquire()
        if wait is not None:
            # §2.7: 960/min per key. Refuse rather than sleep: the worker re-queues the job.
            raise DeliveryError(
                f"PagerDuty REST {what}: client-side limit of {self.limiter.limit} requests per "
                f"{self.limiter.window:.0f} s reached; a slot frees in {wait:.1f} s",
                retryable=True, reason="rate_limited")
        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = dict(params)
        if json is not None:
            kwargs["json"] = dict(json)
        try:
            response = self._client.request(method, path, **kwargs)
        except pagerduty.HttpError as exc:
            # Raised for 401 only; its text quotes a truncated key, so it is not passed on.
            status = exc.response.status_code if exc.response is not None else 401
            raise DeliveryError(
                f"PagerDuty REST {what}: answered {status} (the API token is invalid or deactivated, or "
                f"PAGERDUTY_API_URL is the wrong region)", retryable=False, reason="misconfigured",
                status=status) from None
        except (pagerduty.Error, httpx2.TransportError) as exc:
            # The library wraps httpx2's error (its __cause__); its own text names the URL, so only the cause's
            # is used. A certificate PagerDuty's host presents that we do not trust names the CA bundle setting.
            raise transport_error(f"PagerDuty REST {what}:", self._host, exc) from None
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return {}
            try:
                body = response.json()
            except ValueError:
                return {}
            return body if isinstance(body, dict) else {"value": body}
        retryable, reason = _classify_rest(status)
        detail = self._redact(_rest_error_text(response))
        message = f"PagerDuty REST {what}: answered {status}: {detail}"
        if status == 429 and response.headers.get("ratelimit-reset"):
            # §2.7: `ratelimit-reset` gives the seconds to wait (it may be absent).
            message += f" (ratelimit-reset {response.headers['ratelimit-reset']} s)"
        raise DeliveryError(message, retryable=retryable, reason=reason, status=status)

    def _iter_pages(self, path: str, key: str, what: str,
                    params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Items of a classic-paginated list (§2.5: limit <= 100, offset + limit <= 10000), page by page."""
        offset = 0
        while True:
            page_params = dict(params or {})
            page_params.update({"limit": PAGE_LIMIT, "offset": offset})
            body = self._request("GET", path, what, params=page_params)
            items = body.get(key) or []
            yield from items
            if not body.get("more") or not items:
                return
            offset += len(items)
            if offset + PAGE_LIMIT > MAX_OFFSET_PLUS_LIMIT:
                log.warning("PagerDuty REST %s: stopped after %d results; offset + limit may not exceed %d "
                            "(narrow the query)", what, offset, MAX_OFFSET_PLUS_LIMIT)
                return

    # -- who we are -----------------------------------------------------------------------------------------

    def requester_id(self) -> str:
        """The user id of PAGERDUTY_FROM (`GET /users?query=<email>`, exact email match), cached.

        Raises DeliveryError(misconfigured) when no user has that email.
        """
        with self._lock:
            if self._requester_id is not None:
                return self._requester_id
        wanted = self.pd_from.strip().lower()
        for user in self._iter_pages("/users", "users", "look up PAGERDUTY_FROM", {"query": self.pd_from}):
            if str(user.get("email", "")).strip().lower() == wanted and user.get("id"):
                with self._lock:
                    self._requester_id = str(user["id"])
                return str(user["id"])
        raise DeliveryError(f"PAGERDUTY_FROM {self.pd_from!r} is not the email of a PagerDuty user",
                            retryable=False, reason="misconfigured")

    # -- incidents ------------------------------------------------------------------------------------------

    def find_incident(self, dedup_key: str, *, include_resolved: bool = False) -> dict[str, Any] | None:
        """The incident whose incident/alert key is `dedup_key` (newest open one first), or None.

        The Events API creates incidents whose alert key is our dedup key, and `GET /incidents?incident_key=`
        matches alert keys (§2.5). `date_range=all` so an incident open for over a month is still found (the
        default window is one month, §2.5). With `include_resolved`, the newest resolved one is returned when
        none is open.
        """
        statuses = _OPEN_STATUSES + (["resolved"] if include_resolved else [])
        params = {"incident_key": dedup_key, "statuses": statuses, "date_range": "all",
                  "sort_by": "created_at:desc", "limit": PAGE_LIMIT}
        body = self._request("GET", "/incidents", "find incident by dedup key", params=params)
        incidents = [i for i in body.get("incidents") or [] if isinstance(i, dict)]
        for incident in incidents:
            if incident.get("status") in _OPEN_STATUSES:
                return incident
        return incidents[0] if incidents else None

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """`GET /incidents/{id}`: the incident, with `responder_requests` and `incidents_responders` when the API
        returns them (§2.3). Raises DeliveryError(not_found) for an unknown id."""
        body = self._request("GET", f"/incidents/{incident_id}", f"get incident {incident_id}")
        incident = body.get("incident")
        if not isinstance(incident, dict):
            raise DeliveryError(f"PagerDuty REST get incident {incident_id}: answer has no incident",
                                retryable=True, reason="server_error")
        return incident

    # -- priority and urgency -------------------------------------------------------------------------------

    def _load_priorities(self) -> dict[str, str] | None:
        """name -> id of the account's priorities (read once); None when the account has none (402)."""
        with self._lock:
            if self._priorities is not None:
                return self._priorities
        if self.abilities.missing("priorities"):
            return None
        try:
            items = list(self._iter_pages("/priorities", "priorities", "list priorities"))
        except DeliveryError as exc:
            if exc.reason == "unsupported":
                # §2.2: 402 = the account lacks the priorities ability. Pages still go out, without priority.
                self.abilities.mark_missing("priorities", "incidents get no priority")
                return None
            raise
        names: dict[str, str] = {}
        for item in items:  # most to least severe (§2.2): keep the first of duplicate names
            name, pid = item.get("name"), item.get("id")
            if isinstance(name, str) and isinstance(pid, str):
                names.setdefault(name, pid)
        with self._lock:
            self._priorities = names
        return names

    def priority_for(self, severity_name: str, names: Mapping[str, str] | None = None) -> str | None:
        """The account priority id for our severity (`"P0"`..`"P3"`), or None.

        `names` maps our severities to account priority names, over `DEFAULT_PRIORITY_NAMES` (P0->"P1", ...
        because PagerDuty's default names start at P1): `{}` or None means the defaults, `{"P0": "SEV1"}`
        changes P0 only, and an empty name (`{"P3": ""}`) means "no priority for P3". `GET /priorities` is read
        once and cached. None when the account has no priorities (402: one warning, never an error, never asked
        again), when the severity maps to no name, or when the name does not exist (one warning per name).
        Names match exactly first, then case-insensitively; of duplicate names the most severe wins (as
        PagerDuty does for a name given in PUT /incidents/{id}).
        """
        wanted = priority_name(severity_name, names)
        if not wanted:
            return None
        priorities = self._load_priorities()
        if priorities is None:
            return None
        if wanted in priorities:
            return priorities[wanted]
        folded = {n.casefold(): pid for n, pid in reversed(list(priorities.items()))}
        if wanted.casefold() in folded:
            return folded[wanted.casefold()]
        with self._lock:
            first = wanted not in self._unknown_priority_names
            self._unknown_priority_names.add(wanted)
        if first:
            log.warning("PagerDuty has no priority named %r (for %s); known: %s", wanted,
                        severity_name, ", ".join(priorities) or "none")
        return None

    @staticmethod
    def current_priority_and_urgency(incident: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(priority id or None, urgency) of an incident as the API returned it."""
        priority = incident.get("priority")
        pid = priority.get("id") if isinstance(priority, Mapping) else None
        urgency = incident.get("urgency")
        return (str(pid) if pid else None, str(urgency) if urgency else None)

    def set_priority_and_urgency(self, incident_id: str, priority_id: str | None, urgency: str | None, *,
                                 incident: Mapping[str, Any] | None = None) -> bool:
        """Make the incident's priority `priority_id` and urgency `urgency`; True when a PUT was sent.

        Idempotent: the incident is read first (or `incident` is used) and only what differs is sent; when
        nothing differs there is no PUT. None leaves that field alone (it never clears a priority). This method
        does not decide whether a change lowers the incident: the caller compares with
        `current_priority_and_urgency` first. A 402 on the priority (no priorities ability) is remembered and the
        urgency is still applied.
        """
        if urgency is not None and urgency not in ("high", "low"):
            raise ValueError(f"urgency must be 'high' or 'low', not {urgency!r}")
        current = incident if incident is not None else self.get_incident(incident_id)
        have_priority, have_urgency = self.current_priority_and_urgency(current)
        if self.abilities.missing("priorities"):
            priority_id = None
        update: dict[str, Any] = {"type": "incident"}
        if priority_id is not None and priority_id != have_priority:
            update["priority"] = {"id": priority_id, "type": "priority_reference"}
        if urgency is not None and urgency != have_urgency:
            update["urgency"] = urgency
        if len(update) == 1:
            return False
        what = f"set priority/urgency of incident {incident_id}"
        try:
            # SCHEMA PUT /incidents/{id}: {"incident": {"type": "incident", "priority": {id, type}, "urgency"}}.
            self._request("PUT", f"/incidents/{incident_id}", what, json={"incident": update})
        except DeliveryError as exc:
            if exc.reason != "unsupported" or "priority" not in update:
                raise
            self.abilities.mark_missing("priorities", "incidents get no priority")
            update.pop("priority")
            if "urgency" not in update:
                return False
            self._request("PUT", f"/incidents/{incident_id}", what, json={"incident": update})
        return True

    # -- targets --------------------------------------------------------------------------------------------

    def resolve_target(self, target: Target, *, role: str | None = None) -> ResolvedTarget:
        """(reference type, id) of a role's target: ("escalation_policy_reference" | "user_reference", id).

        An id-looking ref (`^P[A-Z0-9]{5,}$`) is used as is; a name is looked up (`GET /escalation_policies?query=`
        or `GET /users?query=`, exact case-insensitive name, or email for users) and cached. Not found, or
        ambiguous -> DeliveryError(retryable=False, reason="misconfigured") naming the role and target.
        """
        ref_type = _REFERENCE_TYPES.get(target.kind)
        who = f"{target.describe()}" + (f" (role {role})" if role else "")
        if ref_type is None:
            raise DeliveryError(f"{who}: unknown target kind {target.kind!r}", retryable=False,
                                reason="misconfigured")
        ref = target.ref.strip()
        if ID_PATTERN.match(ref):
            return (ref_type, ref)
        key = (target.kind, ref.casefold())
        with self._lock:
            if key in self._targets:
                return self._targets[key]
        fields: tuple[str, ...]
        if target.kind == "user":
            path, list_key, fields = "/users", "users", ("name", "email")
        else:
            path, list_key, fields = "/escalation_policies", "escalation_policies", ("name",)
        matches = [
            item for item in self._iter_pages(path, list_key, f"look up {target.kind.replace('_', ' ')}",
                                              {"query": ref})
            if item.get("id") and any(str(item.get(f, "")).strip().casefold() == ref.casefold() for f in fields)
        ]
        ids = sorted({str(m["id"]) for m in matches})
        if not ids:
            raise DeliveryError(f"{who} not found in PagerDuty", retryable=False, reason="misconfigured")
        if len(ids) > 1:
            raise DeliveryError(f"{who} matches {len(ids)} PagerDuty entries ({', '.join(ids)}); use the id",
                                retryable=False, reason="misconfigured")
        resolved = (ref_type, ids[0])
        with self._lock:
            self._targets[key] = resolved
            self._target_names[resolved] = str(matches[0].get("name") or ref)
        return resolved

    def _as_resolved(self, target: Target | ResolvedTarget) -> ResolvedTarget:
        return self.resolve_target(target) if isinstance(target, Target) else target

    # -- responders -----------------------------------------------------------------------------------------

    def request_responders(self, incident_id: str, targets: Iterable[Target | ResolvedTarget], message: str, *,
                           incident: Mapping[str, Any] | None = None) -> ResponderOutcome:
        """Ask `targets` to respond (`POST /incidents/{id}/responder_requests`, wrapped target form, §2.3, §4.2).

        Idempotent: the incident is read first (or `incident` is used) and targets already requested - in its
        `responder_requests`, or users already among its `incidents_responders` - are skipped, so a retried job
        sends nothing new. A 402 (no `coordinated_responding` ability) returns `unsupported` with ONE warning per
        client and is never asked again. Targets may be `Target`s (resolved here) or resolved tuples.
        """
        if self.abilities.missing("coordinated_responding"):
            return ResponderOutcome("unsupported")
        wanted: list[ResolvedTarget] = []
        for target in targets:
            resolved = self._as_resolved(target)
            if resolved not in wanted:
                wanted.append(resolved)
        current = incident if incident is not None else self.get_incident(incident_id)
        already = _requested_targets(current)
        todo = [t for t in wanted if t not in already]
        skipped = tuple(t for t in wanted if t in already)
        if not todo:
            return ResponderOutcome("already_requested", (), skipped)
        body = {
            "requester_id": self.requester_id(),
            "message": message.strip() or "Your help is requested on this incident.",
            "responder_request_targets": [
                {"responder_request_target": {"id": tid, "type": ttype}} for ttype, tid in todo
            ],
        }
        try:
            self._request("POST", f"/incidents/{incident_id}/responder_requests",
                          f"request responders on incident {incident_id}", json=body)
        except DeliveryError as exc:
            if exc.reason != "unsupported":
                raise
            self.abilities.mark_missing("coordinated_responding",
                                        "roles are not requested as responders (the incident still pages)")
            return ResponderOutcome("unsupported", (), skipped)
        return ResponderOutcome("requested", tuple(todo), skipped)

    def responder_state(self, incident_id: str, target: Target | ResolvedTarget, *,
                        incident: Mapping[str, Any] | None = None) -> ResponderState:
        """Where a requested target stands, for the escalation rule (a role not accepted in N minutes -> backup).

        - `absent`: never requested on this incident;
        - `accepted`: a responder for the target joined (`state: joined`);
        - `pending`: requested and not answered (also: an escalation policy with nobody to page);
        - `declined`: every responder for the target declined (or the request was cancelled, `user_cancelled`).

        Derived from `responder_requests[].responder_request_targets[].incidents_responders` (who a target
        paged; the SCHEMA example's spelling, with the schema's `incident_responders` accepted too) and the
        incident's top-level `incidents_responders` (each user's current state; for escalation policies also
        matched by name through `escalation_policy_requests` when the name is known from `resolve_target`).
        """
        ttype, tid = self._as_resolved(target)
        current = incident if incident is not None else self.get_incident(incident_id)
        requested = False
        user_ids: set[str] = {tid} if ttype == "user_reference" else set()
        embedded: dict[str, str] = {}
        for request in current.get("responder_requests") or []:
            for raw in request.get("responder_request_targets") or []:
                entry = raw.get("responder_request_target", raw) if isinstance(raw, Mapping) else {}
                if _reference_type(entry.get("type")) != ttype or entry.get("id") != tid:
                    continue
                requested = True
                for responder in entry.get("incidents_responders") or entry.get("incident_responders") or []:
                    uid = (responder.get("user") or {}).get("id")
                    if uid:
                        user_ids.add(str(uid))
                        embedded[str(uid)] = str(responder.get("state", "pending"))
        policy_name = self._target_names.get((ttype, tid)) if ttype == "escalation_policy_reference" else None
        states: list[str] = []
        seen: set[str] = set()
        for responder in current.get("incidents_responders") or []:
            uid = str((responder.get("user") or {}).get("id", ""))
            via_policy = policy_name is not None and policy_name in (responder.get("escalation_policy_requests") or [])
            if uid in user_ids or via_policy:
                requested = True
                seen.add(uid)
                states.append(str(responder.get("state", "pending")))
        states += [state for uid, state in embedded.items() if uid not in seen]
        if not requested:
            return "absent"
        if "joined" in states or "accepted" in states:
            return "accepted"
        if not states or "pending" in states:
            return "pending"
        return "declined"

    # -- notes ----------------------------------------------------------------------------------------------

    def add_note(self, incident_id: str, content: str, marker: str) -> bool:
        """Add a note carrying `marker` (e.g. "[incident-bridge:setup:42]"); True when one was added.

        Idempotent: when a note containing `marker` exists (`GET /incidents/{id}/notes`), nothing is sent and
        False is returned. The marker is appended when `content` lacks it; content over `MAX_NOTE_CHARS` is
        trimmed, keeping the marker. An incident at PagerDuty's 2000-note cap (§2.4) gets no note: one warning,
        False, never an error. POST needs the From header (§2.4), which the client sends on every request.
        """
        if not marker.strip():
            raise ValueError("a note needs a non-empty marker (its idempotency key)")
        body = self._request("GET", f"/incidents/{incident_id}/notes", f"list notes of incident {incident_id}")
        notes = body.get("notes") or []
        if any(marker in str(note.get("content", "")) for note in notes if isinstance(note, Mapping)):
            return False
        if len(notes) >= MAX_NOTES_PER_INCIDENT:
            log.warning("incident %s has PagerDuty's maximum of %d notes; note %s not added", incident_id,
                        MAX_NOTES_PER_INCIDENT, marker)
            return False
        self._request("POST", f"/incidents/{incident_id}/notes", f"add note to incident {incident_id}",
                      json={"note": {"content": fit_note(content, marker)}})
        return True

    # -- status updates -------------------------------------------------------------------------------------

    def create_status_update(self, incident_id: str, message: str) -> Literal["sent", "unsupported"]:
        """Post `message` as a status update of the incident (`POST /incidents/{id}/status_updates`, body
        `{"message"}`, the From header required; SCHEMA `createIncidentStatusUpdate`): PagerDuty notifies the
        incident's status-update subscribers.

        Not idempotent by itself: the API offers no way to read an incident's status updates back (SCHEMA has no
        GET for that path, and no log entry type for them), so the caller records that it was sent and does not
        call again. A 402 (the account lacks the ability; SCHEMA lists no 402 here, but the Templates tag says
        status-update features are "secured to customers with the status updates entitlements") returns
        `unsupported` with ONE warning per client and is never asked again.
        """
        if self.abilities.missing("status_updates"):
            return "unsupported"
        try:
            self._request("POST", f"/incidents/{incident_id}/status_updates",
                          f"post status update on incident {incident_id}", json={"message": message})
        except DeliveryError as exc:
            if exc.reason != "unsupported":
                raise
            self.abilities.mark_missing("status_updates", "final stakeholder updates stay drafts in the "
                                                          "resolution note")
            return "unsupported"
        return "sent"

    # -- route test (`incident-bridge notify test --role ROLE`) --------------------------------------------

    def create_test_incident(self, service_id: str, target: Target | ResolvedTarget, title: str, body: str, *,
                             incident_key: str | None = None) -> dict[str, Any]:
        """Open a high-urgency test incident on `service_id` paging `target`; returns the created incident.

        A test page must really notify, so urgency is "high"; the title must say it is a test (a title not
        starting with "[TEST]" gets that prefix; see `route_test_title`). `escalation_policy` for a policy,
        `assignments` for a user: mutually exclusive, one assignee (§2.1). `body.details` is a string (§4.1).
        The incident_key is unique per call (`incident-bridge:test:<id>`) unless given.
        """
        ttype, tid = self._as_resolved(target)
        if not title.lstrip().startswith(TEST_TITLE_PREFIX):
            title = f"{TEST_TITLE_PREFIX} {title}"
        incident: dict[str, Any] = {
            "type": "incident",
            "title": title,
            "service": {"id": service_id, "type": "service_reference"},
            "urgency": "high",
            "incident_key": incident_key or f"{TEST_INCIDENT_KEY_PREFIX}{self._new_id()}",
            "body": {"type": "incident_body", "details": body},
        }
        if ttype == "escalation_policy_reference":
            incident["escalation_policy"] = {"id": tid, "type": "escalation_policy_reference"}
        else:
            incident["assignments"] = [{"assignee": {"id": tid, "type": "user_reference"}}]
        # POST /incidents has extra per-account limits (§2.1); a 429 is a retryable rate_limited error.
        answer = self._request("POST", "/incidents", "create test incident", json={"incident": incident})
        created = answer.get("incident")
        if not isinstance(created, dict):
            raise DeliveryError("PagerDuty REST create test incident: answer has no incident", retryable=False,
                                reason="unexpected_status")
        return created

    def resolve_incident(self, incident_id: str, resolution: str | None = None) -> dict[str, Any]:
        """`PUT /incidents/{id}` with status resolved (idempotent: resolving a resolved incident is a no-op);
        returns the incident as PagerDuty answered."""
        update: dict[str, Any] = {"type": "incident", "status": "resolved"}
        if resolution:
            update["resolution"] = resolution
        answer = self._request("PUT", f"/incidents/{incident_id}", f"resolve incident {incident_id}",
                               json={"incident": update})
        incident = answer.get("incident")
        return incident if isinstance(incident, dict) else {}

    # -- reconciliation -------------------------------------------------------------------------------------

    def list_incidents(self, since: datetime, until: datetime, statuses: Iterable[str] | None = None,
                       service_ids: Iterable[str] | None = None, *,
                       window: timedelta = LIST_WINDOW) -> Iterator[dict[str, Any]]:
        """Incidents created in [since, until), oldest first, fetched lazily page by page (limit 100).

        The range is split into `window`-long slices (the API allows at most 6 months per query, §2.5), and each
        slice is paged with offset + limit <= 10000 (§2.5); a slice with more is cut short with a warning.
        """
        start, end = _utc(since), _utc(until)
        params: dict[str, Any] = {"sort_by": "created_at:asc"}
        if statuses:
            params["statuses"] = list(statuses)
        if service_ids:
            params["service_ids"] = list(service_ids)
        while start < end:
            stop = min(start + window, end)
            slice_params = dict(params, since=start.isoformat(), until=stop.isoformat())
            yield from self._iter_pages("/incidents", "incidents", "list incidents", slice_params)
            start = stop


def priority_name(severity_name: str, names: Mapping[str, str] | None = None) -> str | None:
    """The account priority name for our severity (`"P0"`..`"P3"`): `names` over `DEFAULT_PRIORITY_NAMES`, None
    (or an empty name) for no priority. See `PagerDutyRest.priority_for`."""
    mapping = {**DEFAULT_PRIORITY_NAMES, **{str(k).strip().upper(): str(v or "") for k, v in (names or {}).items()}}
    return mapping.get(severity_name.strip().upper()) or None


def fit_note(content: str, marker: str, limit: int = MAX_NOTE_CHARS) -> str:
    """The note text: `content` with `marker` appended when missing, trimmed to `limit` keeping the marker."""
    text = content if marker in content else f"{content.rstrip()}\n\n{marker}"
    if len(text) <= limit:
        return text
    tail = f"\n… (trimmed)\n\n{marker}"
    return content[: max(0, limit - len(tail))] + tail


def _classify_rest(status: int) -> tuple[bool, str]:
    """`events.classify` plus the REST-only answers: 402 missing ability, 404 not found (§2.7)."""
    if status == 402:
        return False, "unsupported"
    if status == 404:
        return False, "not_found"
    return classify(status)


def _rest_error_text(response: httpx2.Response) -> str:
    """PagerDuty's reason from the REST error shape `{"error": {"message", "code", "errors"}}` (§2.7)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase)[:300]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        text = str(err.get("message", ""))
        if err.get("code") is not None:
            text += f" (code {err['code']})"
        if err.get("errors"):
            text += ": " + "; ".join(str(e) for e in err["errors"])[:500]
        return text
    return str(body)[:300]


def _reference_type(kind: Any) -> str:
    """"user" / "user_reference" -> "user_reference" (the API answers both spellings, SCHEMA example)."""
    text = str(kind or "")
    return text if text.endswith("_reference") else f"{text}_reference"


def _requested_targets(incident: Mapping[str, Any]) -> set[ResolvedTarget]:
    """Targets already asked to respond on `incident` (its responder requests, and users already responders)."""
    found: set[ResolvedTarget] = set()
    for request in incident.get("responder_requests") or []:
        for raw in request.get("responder_request_targets") or []:
            entry = raw.get("responder_request_target", raw) if isinstance(raw, Mapping) else {}
            if entry.get("id"):
                found.add((_reference_type(entry.get("type")), str(entry["id"])))
    for responder in incident.get("incidents_responders") or []:
        uid = (responder.get("user") or {}).get("id")
        if uid:
            found.add(("user_reference", str(uid)))
    return found


def _ssl_verify(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """httpx2's `verify`, with a CA bundle path made into a context (httpx2 deprecates `verify=<str>`)."""
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return verify


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
