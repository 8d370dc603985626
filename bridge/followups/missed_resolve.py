"""`missed_resolve` (a periodic round on the follow-ups lane): resolve Datadog incidents whose recovery never came.

Datadog sends no recovery when a monitor group goes Alert -> No Data -> OK: the incident would stay open forever.
Each round asks Datadog (`datadog-api-client`'s `MonitorsApi.get_monitor(id, group_states="all")`, one request per
monitor) for the state of every monitor group of the Datadog incidents open longer than
`Settings.missed_resolve_after_seconds` (BRIDGE_MISSED_RESOLVE_AFTER), and resolves those whose every group is OK,
with the reason on the incident's timeline (and the resolve sent to PagerDuty, like any resolution). A group in
Alert, Warn, No Data or any other state, or one Datadog does not know, keeps its incident open.

Opt-in: only with DD_API_KEY and DD_APP_KEY (DD_SITE, or DATADOG_API_URL, says where). Rounds are a chain of jobs at
the lowest priority (`RECONCILE_PRIORITY`, behind pages and every other follow-up), one every
BRIDGE_RECONCILE_INTERVAL; a round looks at most `MAX_MONITORS` monitors up (Datadog's API is rate-limited per
organisation). A Datadog failure (5xx, timeout, refusal) resolves nothing: the round is retried with the worker's
backoff, from the start (incidents it resolved already are no longer open).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from bridge.config import Settings
from bridge.errors import DeliveryError
from bridge.followups.context import FollowUpContext
from bridge.followups.reconcile import RECONCILE_PRIORITY
from bridge.followups.schedule import missed_resolve_key
from bridge.store import JobKind, NewJob

log = logging.getLogger(__name__)

# `jobs.dedup_key` of every round.
DEDUP_KEY = "missed_resolve"
# The most monitors one round looks up; the others wait for the next round (oldest incidents first).
MAX_MONITORS = 100
# The one group status that resolves (MonitorOverallStates).
OK = "OK"
# A monitor's state as Datadog answers it: overall_state and state.groups (group name -> {"status": ...}).
MonitorLookup = Callable[[int], Mapping[str, Any] | None]


def enabled(settings: Settings) -> bool:
    """Whether missed resolves are checked: both Datadog keys are set."""
    return bool(settings.dd_api_key and settings.dd_app_key)


def monitor_groups(alerts: Iterable[Mapping[str, Any]]) -> set[tuple[int, str]]:
    """The (monitor id, group) pairs an incident's Datadog alerts came from; the group is the alert's scope
    (`env:prod,service:checkout`), "" for a monitor without groups. Alerts without a numeric monitor id (events
    that are not monitor notifications) give nothing."""
    out = set()
    for alert in alerts:
        fields = (alert.get("alert") or {}).get("fields") or {}
        monitor = str(fields.get("monitor_id") or "")
        if monitor.isdigit():
            out.add((int(monitor), str(fields.get("scope") or "")))
    return out


def _items(group: str) -> frozenset[str]:
    return frozenset(item.strip() for item in group.split(",") if item.strip())


def group_status(monitor: Mapping[str, Any] | None, group: str) -> str | None:
    """The status Datadog gives `group` of `monitor` (None: no such monitor or group). Group names are compared
    as sets of tags (Datadog's order of the tags need not be the webhook's); a monitor without groups answers
    with its overall state."""
    if monitor is None:
        return None
    groups = (monitor.get("state") or {}).get("groups") or {}
    if not group:
        return str(monitor.get("overall_state")) if not groups else None
    wanted = _items(group)
    for name, state in groups.items():
        if _items(str(name)) == wanted:
            return str((state or {}).get("status"))
    return None


def all_ok(statuses: Iterable[str | None]) -> bool:
    """Whether an incident may be resolved: it has groups, and Datadog says every one is OK."""
    found = list(statuses)
    return bool(found) and all(s == OK for s in found)


def queue_round(ctx: FollowUpContext) -> str | None:
    """At the worker's start: make sure a round is queued (one per pass of rounds: two workers queue one). None
    when missed resolves are not enabled."""
    if not enabled(ctx.settings):
        return None
    last = ctx.store.latest_job(JobKind.MISSED_RESOLVE)
    number = 1
    if last is not None:
        if last["state"] in ("pending", "sending"):
            return f"round {last['payload']['round']} is queued"
        number = int(last["payload"]["round"]) + 1
    now = ctx.clock()
    if not ctx.store.enqueue(JobKind.MISSED_RESOLVE, DEDUP_KEY, None, {"round": number}, now,
                             priority=RECONCILE_PRIORITY, dedupe=missed_resolve_key(number)):
        return f"round {number} was queued by another worker"
    return f"round {number} queued"


def datadog_monitors(settings: Settings) -> MonitorLookup:
    """Look a monitor up with its group states through `datadog-api-client` (None when Datadog has no such
    monitor); raises DeliveryError (retryable) for every other failure."""
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client.exceptions import ApiException
    from datadog_api_client.rest import ClientRetry
    from datadog_api_client.v1.api.monitors_api import MonitorsApi

    from bridge.related.sources import failure_reason

    cfg = Configuration(host=settings.datadog_api_url or f"https://api.{settings.dd_site}")
    cfg.api_key["apiKeyAuth"] = settings.dd_api_key.reveal()
    cfg.api_key["appKeyAuth"] = settings.dd_app_key.reveal()
    cfg.request_timeout = settings.http_timeout_seconds  # never a call without a timeout
    # One request per attempt: the worker's persisted backoff retries a failed round (urllib3 would otherwise retry
    # a timed-out read three more times inside one attempt, holding the follow-ups lane four timeouts long).
    cfg.retry_policy = ClientRetry(total=False)  # the client's own urllib3 Retry class

    def lookup(monitor_id: int) -> Mapping[str, Any] | None:
        try:
            with ApiClient(cfg) as api:
                return dict(MonitorsApi(api).get_monitor(monitor_id, group_states="all").to_dict())
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise DeliveryError(f"Datadog monitor {monitor_id}: {failure_reason(exc)}", retryable=True,
                                reason="datadog") from None
        except Exception as exc:  # timeouts, connection errors: the message may echo the request, so not kept
            raise DeliveryError(f"Datadog monitor {monitor_id}: {failure_reason(exc)}", retryable=True,
                                reason="datadog") from None

    return lookup


def missed_resolve(ctx: FollowUpContext, job: dict[str, Any], *,
                   lookup: MonitorLookup | None = None) -> list[NewJob]:
    """One round: resolve the old open Datadog incidents whose every monitor group is OK; returns the next round."""
    if not enabled(ctx.settings):
        log.info("missed-resolve checks end: DD_API_KEY and DD_APP_KEY are no longer both set")
        return []
    number = int(job["payload"]["round"])
    now = ctx.clock()
    after = ctx.settings.missed_resolve_after_seconds
    lookup = lookup or datadog_monitors(ctx.settings)
    candidates = [i for i in ctx.store.list_incidents(status="open", limit=100_000)
                  if i["source"] == "datadog" and datetime.fromisoformat(i["opened_at"]).timestamp() <= now - after]
    candidates.sort(key=lambda i: i["id"])
    monitors: dict[int, Mapping[str, Any] | None] = {}
    resolved = 0
    for incident in candidates:
        groups = monitor_groups(ctx.store.incident_alerts(incident["id"]))
        needed = {m for m, _ in groups} - set(monitors)
        if len(monitors) + len(needed) > MAX_MONITORS:
            log.info("missed-resolve round %d: %d monitors looked up, the rest waits for the next round", number,
                     len(monitors))
            break
        for monitor_id in sorted(needed):
            monitors[monitor_id] = lookup(monitor_id)  # DeliveryError: nothing more resolved, retried later
        statuses = {(m, g): group_status(monitors[m], g) for m, g in sorted(groups)}
        if not all_ok(statuses.values()):
            continue
        which = "; ".join(f"monitor {m}" + (f" group {g}" if g else "") for m, g in statuses)
        reason = (f"resolved: Datadog reports {which} OK, and no recovery came (Datadog sends none after "
                  f"Alert -> No Data -> OK); checked after {int(after)}s open")
        if ctx.store.resolve_incident(incident["id"], now, reason, send_resolve=True):
            resolved += 1
    if resolved:
        log.warning("missed-resolve round %d resolved %d incident(s) Datadog reports OK", number, resolved)
    return [NewJob(JobKind.MISSED_RESOLVE, DEDUP_KEY, None, {"round": number + 1}, priority=RECONCILE_PRIORITY,
                   delay=ctx.settings.reconcile_interval_seconds, dedupe=missed_resolve_key(number + 1))]
