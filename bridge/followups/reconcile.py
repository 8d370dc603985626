"""Reconciliation with PagerDuty, in the background: the incidents we believe open (or resolved) compared with
PagerDuty's, and drift repaired.

A pass looks up, by dedup key, every incident opened in the last `WINDOW_DAYS` whose trigger reached PagerDuty: one
REST request each, so 1,300 incidents take over 80 s even at PagerDuty's full 960 requests/min. It therefore never
runs before or instead of delivery. A pass is a chain of `reconcile` jobs on the delivery worker's follow-ups lane:
each job is a slice of at most `SLICE` incidents, in id order after the cursor its payload keeps, and queues the
next slice as its successor in the transaction that records it done. Hence:

- pages, and every other follow-up that is due, go first: reconcile jobs have the lowest priority of all
  (`RECONCILE_PRIORITY`), and a slice gives way after `SLICE` lookups;
- the lookups go through the REST client's one rate limiter, like every other follow-up's requests, and leave
  `RESERVE_SHARE` of its budget to them: a pass never spends the budget a new incident's set-up needs;
- a worker that stops (or dies) mid-pass resumes at the cursor when it starts again, and `queue_pass` starts a new
  pass only when the last one ended at least `Settings.reconcile_interval_seconds` ago (BRIDGE_RECONCILE_INTERVAL):
  a worker restarting in a loop does not look 1,300 incidents up at every start;
- a finished pass queues the next one, due `reconcile_interval_seconds` later, with its last slice: a worker that
  runs for weeks keeps finding the drift (a resolve PagerDuty dropped in a maintenance window) without a restart.
  The scheduled pass takes its window and its last incident when its first slice runs.

Repairs: open here but no open incident in PagerDuty (a human resolved it there) -> resolved here too, with the
follow-ups of a resolution; resolved here but open in PagerDuty (our resolve was lost: a crash, a dead-lettered
event; or delivered and dropped by PagerDuty during a maintenance window) -> the resolve is sent again (a dropped one
at most once per pass). An incident with an event still queued or being sent, or paged after the pass
started (PagerDuty creates incidents from events asynchronously, so it may not show one yet), is left to the next
pass.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bridge.errors import DeliveryError, Reschedule
from bridge.followups.context import FollowUpContext, Rest
from bridge.followups.schedule import reconcile_key, resend_resolve_key
from bridge.store import JobKind, NewJob, Store

log = logging.getLogger(__name__)

# Which incidents a pass compares: those opened in the last week (older ones have long been settled by hand).
WINDOW_DAYS = 7.0
# Lookups per job: about 2 s of PagerDuty round trips at 100 ms, the longest a due follow-up waits behind a slice.
SLICE = 20
# Below every other follow-up (set-ups and timers 1, reopen notes 2, notes 5, related-incident notes 6).
RECONCILE_PRIORITY = 9
# The share of the REST rate budget (960 requests/min) a pass leaves to the other follow-ups.
RESERVE_SHARE = 0.25
# How soon a slice cut short by a failed lookup continues (once it has made progress; a slice that failed before
# its first lookup is retried with the worker's backoff instead).
CONTINUE_AFTER_FAILURE = 1.0
# The shortest wait for REST budget: a wait of 0 would have the lane look again at once.
MIN_BUDGET_WAIT = 0.5
# `jobs.dedup_key` of every reconcile job (the column orders events of one key; reconcile jobs are not ordered).
DEDUP_KEY = "reconcile"
# What a pass's state is called, by the state of its newest job.
PASS_STATES = {"pending": "running", "sending": "running", "delivered": "finished"}


def queue_pass(ctx: FollowUpContext) -> str | None:
    """At the worker's start: make sure a reconciliation pass is queued, without redoing recent work.

    An unfinished pass is left to continue at its cursor; a pass that ended less than
    `settings.reconcile_interval_seconds` ago means no new one; otherwise a new pass over the incidents of the last
    `WINDOW_DAYS` is queued (its first slice, cursor 0, with a dedupe key per pass: two workers starting at once
    queue one pass). Returns what it did, for the log; None without the REST API or in a dry run (nothing to
    compare with).
    """
    if ctx.rest is None or ctx.dry_run:
        return None
    now = ctx.clock()
    interval = ctx.settings.reconcile_interval_seconds
    last = ctx.store.latest_job(JobKind.RECONCILE)
    number = 1
    if last is not None:
        payload = last["payload"]
        number = int(payload["pass"]) + 1
        if last["state"] in ("pending", "sending") and payload.get("scheduled"):
            due = datetime.fromtimestamp(last["next_attempt_at"], tz=UTC).isoformat(timespec="seconds")
            return f"pass {payload['pass']} is scheduled for {due} (every {interval:.0f} s, BRIDGE_RECONCILE_INTERVAL)"
        if last["state"] in ("pending", "sending"):
            left = ctx.store.count_incidents_after(payload["cursor"], since=payload["since"],
                                                   upto_id=payload["upto_id"])
            return (f"resuming pass {payload['pass']} after incident {payload['cursor']} "
                    f"({left} incident(s) left)")
        ended = last["delivered_at"] or last["updated_at"]
        if now - ended < interval:
            how = "finished" if last["state"] == "delivered" else f"stopped ({last['state']} job {last['id']})"
            return (f"no new pass: pass {payload['pass']} {how} {now - ended:.0f} s ago, and passes are at least "
                    f"{interval:.0f} s apart (BRIDGE_RECONCILE_INTERVAL)")
    since = now - WINDOW_DAYS * 86400
    upto_id = ctx.store.last_incident_id()
    payload = {"pass": number, "started_at": now, "since": since, "upto_id": upto_id, "cursor": 0,
               "looked_up": 0, "repaired": 0}
    if not ctx.store.enqueue(JobKind.RECONCILE, DEDUP_KEY, None, payload, now, priority=RECONCILE_PRIORITY,
                             dedupe=reconcile_key(number, 0)):
        return f"pass {number} was queued by another worker"
    total = ctx.store.count_incidents_after(0, since=since, upto_id=upto_id)
    return f"new pass {number} over {total} incident(s) opened in the last {WINDOW_DAYS:.0f} days"


def reconcile_slice(ctx: FollowUpContext, job: dict[str, Any]) -> list[NewJob]:
    """The `reconcile` job: compare the next slice of a pass with PagerDuty and repair drift; returns the next
    slice (the last, empty slice returns nothing: the pass is finished, with its totals in that job's payload).

    Stops early, handing over to a successor at the cursor reached, when the REST budget is down to the other
    follow-ups' reserve or a lookup fails after some progress. Before any progress it raises `Reschedule` (no
    budget: retried when there is, without counting an attempt) or the lookup's `DeliveryError` (the worker's
    backoff; the dead-letter queue for a refusal such as a revoked token).
    """
    state = dict(job["payload"])
    number = int(state["pass"])
    if ctx.rest is None or ctx.dry_run:
        log.warning("reconciliation pass %d ends: PagerDuty's REST API is no longer configured", number)
        return []
    now = ctx.clock()
    if state.pop("scheduled", False):  # a pass queued by the previous one: its window starts now
        state.pop("previous", None)
        state.update(started_at=now, since=now - WINDOW_DAYS * 86400, upto_id=ctx.store.last_incident_id())
        log.info("reconciliation pass %d starts (every %.0f s, BRIDGE_RECONCILE_INTERVAL)", number,
                 ctx.settings.reconcile_interval_seconds)
    start = int(state["cursor"])
    batch = ctx.store.incidents_after(start, since=state["since"], upto_id=state["upto_id"], limit=SLICE)
    if not batch:
        log.info("reconciliation pass %d finished in %.0f s: %d incident(s) looked up in PagerDuty, %d repaired",
                 number, now - state["started_at"], state["looked_up"], state["repaired"])
        finished = {"pass": number, "started_at": state["started_at"], "looked_up": state["looked_up"],
                    "repaired": state["repaired"], "finished_at": now}
        interval = ctx.settings.reconcile_interval_seconds
        # 0 means a pass at every start and none in between (passes back to back would spend the REST budget).
        return [_scheduled_pass(finished, now, interval)] if interval > 0 else []
    repaired = 0
    for incident in batch:
        if not _worth_a_lookup(ctx, incident, state["started_at"]):
            state["cursor"] = incident["id"]
            continue
        wait = _budget_wait(ctx.rest)
        if wait is not None:
            if state["cursor"] == start:
                raise Reschedule(now + wait)
            return [_next_slice(state, delay=wait)]
        try:
            open_there = ctx.rest.find_incident(incident["dedup_key"])
        except DeliveryError as exc:
            if state["cursor"] == start:
                raise  # nothing to hand over: retried with the worker's backoff, like any follow-up
            log.info("reconciliation pass %d: the slice stops after incident %d and continues shortly: %s",
                     number, state["cursor"], exc.message)
            return [_next_slice(state, delay=CONTINUE_AFTER_FAILURE)]
        state["looked_up"] += 1
        if _repair(ctx, incident, open_there, number, now):
            repaired += 1
            state["repaired"] += 1
        state["cursor"] = incident["id"]
    if repaired:
        log.warning("reconciliation pass %d repaired %d incident(s)", number, repaired)
    return [_next_slice(state)]


def pass_status(store: Store) -> dict[str, Any] | None:
    """The newest pass's progress (for `GET /api/v1/pipeline`), None when there has been none: its number, state
    (running, finished, or stopped: its job was dead-lettered or discarded), start, cursor, incidents left, lookups
    made and incidents repaired so far, and when it finished."""
    last = store.latest_job(JobKind.RECONCILE)
    if last is None:
        return None
    payload = last["payload"]
    if payload.get("scheduled") and last["state"] == "pending":  # the finished pass, and when the next starts
        done = payload["previous"]
        return {"pass": done["pass"], "state": "finished", "started_at": _iso(done["started_at"]), "cursor": None,
                "remaining": 0, "looked_up": done["looked_up"], "repaired": done["repaired"],
                "finished_at": _iso(done["finished_at"]), "next_pass_at": _iso(last["next_attempt_at"])}
    state = PASS_STATES.get(last["state"], "stopped")
    finished = state == "finished"
    remaining = 0 if finished else store.count_incidents_after(payload["cursor"], since=payload["since"],
                                                               upto_id=payload["upto_id"])
    return {"pass": payload["pass"], "state": state, "started_at": _iso(payload["started_at"]),
            "cursor": payload["cursor"], "remaining": remaining, "looked_up": payload["looked_up"],
            "repaired": payload["repaired"], "finished_at": _iso(last["delivered_at"]) if finished else None}


def _worth_a_lookup(ctx: FollowUpContext, incident: dict[str, Any], pass_started: float) -> bool:
    """Whether PagerDuty's view of the incident can be compared with ours now."""
    if not ctx.store.triggers_delivered(incident["id"]):
        return False  # PagerDuty never heard of it
    if incident["last_paged_at"] is not None and incident["last_paged_at"] > pass_started:
        return False  # paged during this pass: PagerDuty may not show the incident yet
    # An event on its way changes what PagerDuty shows: compared now, a resolve in the queue would be sent twice,
    # or a re-page taken for an incident a human resolved.
    return not (ctx.store.event_unfinished(incident["id"], "trigger")
                or ctx.store.event_unfinished(incident["id"], "resolve"))


def _repair(ctx: FollowUpContext, incident: dict[str, Any], open_there: dict[str, Any] | None, number: int,
            now: float) -> bool:
    """Repair one incident's drift from PagerDuty; whether it had drifted."""
    found = f"found by reconciliation pass {number}"
    if incident["status"] == "open" and open_there is None:
        return ctx.store.resolve_incident(incident["id"], now, f"resolved in PagerDuty ({found})",
                                          send_resolve=False)
    if incident["status"] == "resolved" and open_there is not None:
        # Our resolve reached PagerDuty and it still has the incident open: the Events API accepted it (202) and
        # dropped it, as it does during a maintenance window of the service. Sent again once per pass, until a
        # pass finds the incident resolved there too.
        dropped = ctx.store.last_event_action(incident["id"]) == "resolve"
        if not ctx.store.enqueue(JobKind.EVENT, incident["dedup_key"], incident["id"],
                                 {"event_action": "resolve", "dedup_key": incident["dedup_key"]}, now,
                                 action="resolve", priority=0,
                                 dedupe=resend_resolve_key(incident["id"], number) if dropped else None):
            return False
        why = ("PagerDuty still had the incident open after our resolve was delivered (a maintenance window drops "
               "resolves)" if dropped else "PagerDuty still had the incident open")
        ctx.store.add_timeline(incident["id"], now, "resolution", f"resolve re-sent: {why} ({found})",
                               "incident-bridge")
        return True
    return False


def _budget_wait(rest: Rest) -> float | None:
    """None while the REST budget has room above the other follow-ups' reserve; else how long until a whole slice
    fits above it again."""
    free, limit = rest.requests_left()
    reserve = int(limit * RESERVE_SHARE)
    if free > reserve:
        return None
    return max(MIN_BUDGET_WAIT, rest.seconds_until_free(min(limit, reserve + SLICE)))


def _scheduled_pass(finished: dict[str, Any], now: float, interval: float) -> NewJob:
    """The first slice of the pass after `finished`, due `interval` later; its window and last incident are taken
    when it runs (`scheduled`), so incidents opened meanwhile are in it. It keeps the finished pass's totals for
    `pass_status` until it starts."""
    number = int(finished["pass"]) + 1
    due = now + interval
    state = {"pass": number, "started_at": due, "since": due - WINDOW_DAYS * 86400, "upto_id": 0, "cursor": 0,
             "looked_up": 0, "repaired": 0, "scheduled": True, "previous": finished}
    return NewJob(JobKind.RECONCILE, DEDUP_KEY, None, state, priority=RECONCILE_PRIORITY, delay=interval,
                  dedupe=reconcile_key(number, 0))


def _next_slice(state: dict[str, Any], *, delay: float = 0.0) -> NewJob:
    """The job that continues the pass after `state["cursor"]`."""
    return NewJob(JobKind.RECONCILE, DEDUP_KEY, None, dict(state), priority=RECONCILE_PRIORITY, delay=delay,
                  dedupe=reconcile_key(int(state["pass"]), int(state["cursor"])))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat()
