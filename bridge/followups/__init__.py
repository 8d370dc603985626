"""Follow-ups: what happens after a page went out, each step a persisted outbox job.

- `incident_setup` (after a trigger of a declared incident, P0/P1 by default, and of security incidents):
  find the PagerDuty incident, set its priority and urgency, note the role assignment with each role's duties
  and the decision's reasons, request a responder for every role, and arm the escalation timers.
- `escalation_check` (a timer): the process says the Incident Coordinator and Communications Lead must be
  reached; when their request is not accepted in time, request their backup and note it.
- `related_note`: related past incidents, noted on the PagerDuty incident (after the page, never before).
- `storm_digest`: one note summarising the alerts of a storm.
- `auto_resolve` (a timer): resolve an incident whose source never sends recoveries.
- `resolution_note` (queued with each resolution): the process's resolution checklist for a declared incident,
  addressed to the roles that hold each step, with the final stakeholder update (sent as a PagerDuty status
  update when the rules opt in, a draft in the note otherwise).
- `reopen_note` (after the trigger of a reopened incident): the resolution did not hold; links the previous
  PagerDuty incident when PagerDuty opened a new one.
- `postmortem`: draft the post-mortem of a resolved P0/P1 incident and note where to find it.
- `missed_resolve` (a periodic round, queued at the worker's start with DD_API_KEY/DD_APP_KEY): resolve the old
  Datadog incidents whose monitor groups Datadog reports OK (no recovery is sent after Alert -> No Data -> OK).
- `reconcile` (a chain of slices, queued at the worker's start): compare the incidents of the last 7 days with
  PagerDuty and repair drift, in the background at the lowest priority (see `reconcile`).

Every step is idempotent (safe to run again after a crash mid-way) and timers are jobs with a due time, so a
restarted bridge still escalates on time. Without `PAGERDUTY_API_TOKEN` the REST steps are skipped and the
timeline says so; the rest still happens. Without a routing key (a dry run) the REST client is `DryRunRest`: every
follow-up runs as in a real run, and each request it would send is described on the timeline and printed, one
block per job (`dry_run`).

Modules: one per kind (`setup`, `escalation`, `related_note`, `storm_digest`, `auto_resolve`, `resolution`,
`reopen`, `postmortem`, `reconcile`), each a function `handler(context, job)` that may return the jobs continuing
it (queued with its completion); `schedule` queues follow-ups and defines every dedupe key; `context` holds what
the handlers share (`FollowUpContext`, `Rest`); `dry_run` is the REST client of a dry run; `roles` and
`resolution_text` are pure. `FollowUps` dispatches a job to its kind's handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from bridge.config import Settings
from bridge.errors import DeliveryError
from bridge.followups.auto_resolve import auto_resolve
from bridge.followups.context import FollowUpContext, Rest
from bridge.followups.dry_run import DryRunRest
from bridge.followups.escalation import escalation_check
from bridge.followups.missed_resolve import missed_resolve, queue_round
from bridge.followups.postmortem import postmortem
from bridge.followups.reconcile import queue_pass, reconcile_slice
from bridge.followups.related_note import related_note
from bridge.followups.reopen import reopen_note
from bridge.followups.resolution import resolution_note
from bridge.followups.roles import declared, role_note
from bridge.followups.schedule import after_delivery
from bridge.followups.setup import incident_setup
from bridge.followups.storm_digest import alert_host, storm_digest, storm_digest_text
from bridge.rules.holder import RulesetHolder
from bridge.store import JobKind, NewJob, Store

__all__ = ["HANDLERS", "DryRunRest", "FollowUpContext", "FollowUps", "Rest", "alert_host", "declared",
           "role_note", "storm_digest_text"]

# A handler runs one job and returns the jobs that continue it, if any.
Handler = Callable[[FollowUpContext, dict[str, Any]], Sequence[NewJob] | None]

# Each job kind and its handler.
HANDLERS: Mapping[str, Handler] = {
    JobKind.INCIDENT_SETUP: incident_setup,
    JobKind.ESCALATION_CHECK: escalation_check,
    JobKind.RELATED_NOTE: related_note,
    JobKind.STORM_DIGEST: storm_digest,
    JobKind.AUTO_RESOLVE: auto_resolve,
    JobKind.RESOLUTION_NOTE: resolution_note,
    JobKind.REOPEN_NOTE: reopen_note,
    JobKind.POSTMORTEM: postmortem,
    JobKind.RECONCILE: reconcile_slice,
    JobKind.MISSED_RESOLVE: missed_resolve,
}


class FollowUps:
    """Handlers for the follow-up job kinds. `handle(job)` raises DeliveryError to retry or dead-letter, and
    Reschedule to run again later; any other exception is a bug of ours, which the worker retries a bounded
    number of times (`MAX_INTERNAL_FAILURES`) before dead-lettering the job."""

    def __init__(self, store: Store, settings: Settings, holder: RulesetHolder, rest: Rest | None, *,
                 clock: Callable[[], float], related_sources: Callable[[], list[Any]] | None = None) -> None:
        self.context = FollowUpContext(store, settings, holder, rest, clock, related_sources)
        self.handlers: dict[str, Callable[[dict[str, Any]], Sequence[NewJob] | None]] = {
            kind: partial(handler, self.context) for kind, handler in HANDLERS.items()}

    def handle(self, job: dict[str, Any]) -> list[NewJob]:
        """Run the job's handler; returns the jobs that continue it, for the worker to queue with its completion."""
        handler = self.handlers.get(job["kind"])
        if handler is None:
            raise DeliveryError(f"unknown job kind {job['kind']!r}", retryable=False, reason="unexpected_status")
        rest = self.context.rest
        if isinstance(rest, DryRunRest):
            with rest.job(job):  # what the job would have sent, printed as one block
                return list(handler(job) or ())
        return list(handler(job) or ())

    def after_delivery(self, job: dict[str, Any]) -> list[NewJob]:
        """The follow-ups of a delivered job (`schedule.after_delivery`), queued by the delivery worker in the
        transaction that records the delivery."""
        return after_delivery(self.context, job)

    def queue_reconciliation(self) -> str | None:
        """At the worker's start: resume the unfinished reconciliation pass, or queue a new one unless the last
        ended recently (`reconcile.queue_pass`); returns what it did, None without the REST API."""
        return queue_pass(self.context)

    def queue_missed_resolves(self) -> str | None:
        """At the worker's start: queue the periodic missed-resolve round unless one is queued
        (`missed_resolve.queue_round`); None without DD_API_KEY and DD_APP_KEY."""
        return queue_round(self.context)
