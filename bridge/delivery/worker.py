"""The delivery worker: takes jobs from the outbox and sends them to PagerDuty, in order, with retries.

- Jobs of one dedup key go out in the order they were created (the store never leases a job while an earlier
  one of the same key is unfinished), so a resolve is never overtaken by its trigger's retry.
- Retryable failures (429, 5xx, timeouts, network) go back to the outbox with the attempt count and the next
  attempt time persisted: a restarted worker resumes the same schedule. They are retried for as long as it
  takes: a page is never given up because PagerDuty was down. A 400 is dead-lettered with PagerDuty's reason,
  visible in `GET /api/v1/jobs?state=dead` and in the log.
- Our own exceptions (a bug in a follow-up or in the client: anything but PagerDuty's answer) are retried with
  the same backoff `max_internal_failures` times at most, then dead-lettered with reason "internal" and the
  exception's one-line summary (secrets redacted). The traceback is logged at the first failure and at the
  dead-lettering; the attempts between log one line. An operator retries or discards dead jobs
  (`Store.retry_job`, `Store.discard_job`).
- Without a routing key the worker runs dry: every event is printed, clearly labelled, and recorded.
- At most `events_rate_per_minute` events leave per sliding minute (PagerDuty: about 120 per integration key);
  beyond that jobs wait in the outbox, the most severe first. Nothing is dropped.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Any, Protocol, TextIO

from bridge.config import Settings
from bridge.delivery.events import EventsClient, retry_delay
from bridge.errors import DatabaseBusy, DeliveryError, Reschedule
from bridge.logformat import log_fields
from bridge.metrics import DELIVERIES
from bridge.store import JobKind, NewJob, Store

log = logging.getLogger(__name__)

# How many attempts of one job may fail on our own exception before it is dead-lettered: enough to ride out a
# transient fault (a database hiccup inside a follow-up), few enough that a bug costs a handful of tracebacks,
# not one per backoff period forever. `incident-bridge worker` reads BRIDGE_MAX_INTERNAL_FAILURES.
MAX_INTERNAL_FAILURES = 5
# How a dry run labels what it prints in place of sending (the events here, the follow-ups' blocks in
# `bridge.followups.dry_run`).
DRY_RUN_LABEL = "DRY-RUN (no PAGERDUTY_ROUTING_KEY, nothing sent)"
# The longest error summary kept on a job (the store keeps 2000 characters; a summary is one line).
SUMMARY_LENGTH = 500
# How long an idle lane sleeps when nothing wakes it and no job of its lane is due sooner. Its own process wakes
# it whenever there may be work: the pipeline stage when it queued jobs (or was signalled), the other lane when it
# handled a job (a delivered page queues its set-up, a follow-up may queue a page), `stop`. What only this
# fallback catches: jobs that another replica's stage queued on a shared PostgreSQL database (that replica's
# own lanes are woken at once) and the end of a lease held by a worker that died elsewhere.
IDLE_FALLBACK_SECONDS = 5.0
# How long a lane waits after an unexpected error (the database is down) before trying again.
ERROR_RETRY_SECONDS = 1.0


class Lane(StrEnum):
    """Which jobs a delivery loop takes: the pages, the follow-ups, or (one loop, as tests drive it) both."""

    EVENTS = "events"
    FOLLOW_UPS = "follow-ups"
    ALL = "all"


class FollowUpHandler(Protocol):
    """What the worker hands non-event jobs to, and asks what follows a delivery (`bridge.followups.FollowUps`)."""

    def handle(self, job: dict[str, Any]) -> Sequence[NewJob]:
        """Run one follow-up job and return the jobs that continue it (queued in the transaction that records it
        done); raise Reschedule, DeliveryError, or (a bug) anything else."""
        ...

    def after_delivery(self, job: dict[str, Any]) -> list[NewJob]:
        """The jobs a delivered job sets off, queued in the transaction that records the delivery."""
        ...


class DeliveryWorker:
    """Delivers outbox jobs. `run_once` handles one job; `run` loops until stopped."""

    def __init__(self, store: Store, settings: Settings, *, client: EventsClient | None = None,
                 clock: Callable[[], float] = time.time, out: TextIO | None = None,
                 retry_multiplier: float = 2.0, retry_max: float = 300.0,
                 followups: FollowUpHandler | None = None, max_internal_failures: int = MAX_INTERNAL_FAILURES) -> None:
        self.store = store
        self.max_internal_failures = max(1, max_internal_failures)
        self.followups = followups
        self.settings = settings
        self.clock = clock
        self.out = out or sys.stdout
        self.retry_multiplier = retry_multiplier
        self.retry_max = retry_max
        self.dry_run = settings.dry_run
        self.client = client
        if self.client is None and not self.dry_run:
            self.client = EventsClient(settings.routing_key.reveal(), settings.events_url,
                                       timeout=settings.http_timeout_seconds, verify=settings.tls_verify())
        self.stop_event = threading.Event()
        # Set by the pipeline stage when it queued jobs (`notify`), and by `stop`: the lanes' idle waits end at once.
        self.wake = {lane: threading.Event() for lane in (Lane.EVENTS, Lane.FOLLOW_UPS)}
        # Clear while the events lane is sending pages one after another; the follow-ups lane waits for it.
        self.pages_drained = threading.Event()
        self.pages_drained.set()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        # A send never outlasts the HTTP timeout; a lease a little longer than that is never taken by another
        # worker while the send can still succeed.
        self.lease_seconds = settings.http_timeout_seconds * 2 + 5

    def stop(self) -> None:
        """Finish the job in hand, then return from `run`."""
        self.stop_event.set()
        self.pages_drained.set()
        self.notify()

    def close(self) -> None:
        """Release the HTTP client."""
        if self.client is not None:
            self.client.close()

    def rate_limited_until(self, now: float) -> float | None:
        """When the next event may leave, if the per-minute budget is spent now."""
        limit = self.settings.events_rate_per_minute
        if self.dry_run or limit <= 0:
            return None
        if self.store.events_sent_since(now - 60.0) >= limit:
            return now + 1.0
        return None

    def run_once(self, lane: Lane = Lane.ALL) -> bool:
        """Deliver at most one due job of `lane`. Returns True when a job was handled."""
        now = self.clock()
        # Past the per-minute budget, events wait in the outbox (the most severe first once it frees up);
        # follow-ups, which go to the REST API, still run.
        limited = lane is not Lane.FOLLOW_UPS and self.rate_limited_until(now) is not None
        if lane is Lane.EVENTS and limited:
            return False
        exclude = (JobKind.EVENT,) if limited or lane is Lane.FOLLOW_UPS else ()
        only = (JobKind.EVENT,) if lane is Lane.EVENTS else ()
        job = self.store.lease_job(now, self.lease_seconds, self.owner, exclude_kinds=exclude, only_kinds=only)
        if job is None:
            return False
        # Every line about this job names it, its alert and dedup key, and the request that brought the alert.
        with log_fields(job_id=job["id"], job_kind=job["kind"], alert_id=job.get("alert_id"),
                        dedup_key=job.get("dedup_key"), incident_id=job.get("incident_id"),
                        request_id=job.get("request_id")):
            if job["kind"] == JobKind.EVENT:
                self._deliver(job)
            else:
                self._follow_up(job)
        return True

    def _follow_up(self, job: dict[str, Any]) -> None:
        if self.followups is None:
            self.store.job_failed(job["id"], self.clock(), error="no follow-up handler configured",
                                  reason="misconfigured", retry_at=None)
            return
        try:
            successors = self.followups.handle(job)
        except Reschedule as again:
            self.store.release_job(job["id"], self.clock(), again.due)
            return
        except DeliveryError as exc:
            self._failed(job, exc)
            return
        except DatabaseBusy:
            # Not the follow-up's fault, and nothing can be recorded now: the loop retries, and the job, still
            # leased, is due again when its lease ends.
            raise
        except Exception as exc:  # a bug in a follow-up must not stop deliveries: retried a few times, then dead
            self._internal_failure(job, exc)
            return
        DELIVERIES.labels(action=job["kind"], result="done").inc()
        # A job that continues in another (a reconciliation slice and the next one) hands over in one transaction:
        # a crash leaves either this job to redo or its successor to run, never neither.
        self.store.job_delivered(job["id"], self.clock(), dry_run=False, response=None, then=successors)

    def _failed(self, job: dict[str, Any], exc: DeliveryError) -> None:
        now = self.clock()
        attempt = int(job["attempts"]) + 1
        # PagerDuty's answer is quoted in the message, and an answer (or a proxy's) may echo the key it was sent:
        # the message goes to the log, the job row and the API, so every configured secret is taken out first.
        message = _redact(exc.message, self.settings.secrets())
        DELIVERIES.labels(action=job["action"], result=exc.reason).inc()
        if exc.retryable:
            delay = retry_delay(attempt, multiplier=self.retry_multiplier, maximum=self.retry_max)
            if exc.retry_after is not None:
                # The server said when: our jittered backoff may be shorter, and a retry before then is refused.
                delay = max(delay, exc.retry_after)
            log.warning("job %s (%s %s) failed, attempt %d, retry in %.1fs: %s [%s]", job["id"], job["kind"],
                        job["dedup_key"], attempt, delay, message, exc.reason)
            self.store.job_failed(job["id"], now, error=message, reason=exc.reason, retry_at=now + delay)
        else:
            log.error("job %s (%s %s) dead-lettered: %s [%s]", job["id"], job["kind"], job["dedup_key"],
                      message, exc.reason)
            self.store.job_failed(job["id"], now, error=message, reason=exc.reason, retry_at=None)

    def _internal_failure(self, job: dict[str, Any], exc: Exception) -> None:
        """Our own exception ended this attempt: retry with backoff, dead-letter at `max_internal_failures`.

        The traceback is logged at the first failure and at the dead-lettering only: in between, one line each.
        """
        now = self.clock()
        attempt = int(job["attempts"]) + 1
        failures = int(job.get("internal_failures") or 0) + 1
        secrets = self.settings.secrets()
        summary = error_summary(exc, secrets)
        give_up = failures >= self.max_internal_failures
        DELIVERIES.labels(action=job["action"], result="internal").inc()
        what = (f"job {job['id']} ({job['kind']} {job['dedup_key']}) failed on our own error "
                f"({failures} of at most {self.max_internal_failures})")
        if give_up:
            log.error("%s, dead-lettered: %s\n%s", what, summary, redacted_traceback(exc, secrets))
            self.store.job_failed(job["id"], now, error=summary, reason="internal", retry_at=None, internal=True)
            return
        delay = retry_delay(attempt, multiplier=self.retry_multiplier, maximum=self.retry_max)
        if failures == 1:
            log.error("%s, retry in %.1fs: %s\n%s", what, delay, summary, redacted_traceback(exc, secrets))
        else:
            log.warning("%s, retry in %.1fs: %s", what, delay, summary)
        self.store.job_failed(job["id"], now, error=summary, reason="internal", retry_at=now + delay,
                              internal=True)

    def _deliver(self, job: dict[str, Any]) -> None:
        event = job["payload"]
        if self.dry_run:
            try:
                print_dry_run_event(event, self.out)
            except Exception as exc:  # our own bug (an odd payload): bounded like any other
                self._internal_failure(job, exc)
                return
            self.store.job_delivered(job["id"], self.clock(), dry_run=True, response=None,
                                     then=self._after_delivery(job))
            return
        assert self.client is not None
        try:
            response = self.client.send(event)
        except DeliveryError as exc:
            self._failed(job, exc)
            return
        except Exception as exc:  # not PagerDuty's answer but our bug: bounded, unlike PagerDuty's failures
            self._internal_failure(job, exc)
            return
        log.info("delivered job %s: %s %s", job["id"], job["action"], job["dedup_key"])
        DELIVERIES.labels(action=job["action"], result="delivered").inc()
        self.store.job_delivered(job["id"], self.clock(), dry_run=False, response=response,
                                 then=self._after_delivery(job))

    def _after_delivery(self, job: dict[str, Any]) -> list[NewJob]:
        """The follow-ups of a delivered event, to queue with the delivery. The event left already: a bug here
        must not make the worker send it again, so it is logged and the delivery recorded without them."""
        if self.followups is None:
            return []
        try:
            return self.followups.after_delivery(job)
        except Exception as exc:
            log.error("job %s delivered, but its follow-ups could not be worked out: %s\n%s", job["id"],
                      error_summary(exc, self.settings.secrets()),
                      redacted_traceback(exc, self.settings.secrets()))
            return []

    def run(self, idle_sleep: float = IDLE_FALLBACK_SECONDS) -> None:
        """Loop until `stop_event` is set; finishes the jobs in hand before stopping.

        Two lanes, each a thread: events (the pages) and follow-ups (REST calls, related-incident lookups, notes).
        A slow follow-up never holds a page back, and a page never waits for one. An idle lane sleeps until it is
        woken (`notify`), its next job is due, or `idle_sleep` seconds passed.
        """
        log.info("delivery worker started (%s)", "dry-run" if self.dry_run else "sending to PagerDuty")
        try:
            released = self.store.release_orphaned_leases(socket.gethostname(), _pid_alive, self.clock())
        except DatabaseBusy as exc:  # those jobs go out anyway when their leases end
            log.warning("cannot release the jobs of workers that died: %s", exc.message)
            released = 0
        if released:
            log.warning("released %d job(s) left mid-send by a worker that died; they go out now", released)
        follow_ups = threading.Thread(target=self._loop, args=(Lane.FOLLOW_UPS, idle_sleep), name="follow-ups",
                                      daemon=True)
        follow_ups.start()
        self._loop(Lane.EVENTS, idle_sleep)
        follow_ups.join(timeout=self.lease_seconds)
        log.info("delivery worker stopped")

    def notify(self) -> None:
        """New jobs may be due (the pipeline stage queued some): both lanes look now."""
        for event in self.wake.values():
            event.set()

    def _loop(self, lane: Lane, idle_sleep: float) -> None:
        wake = self.wake[lane]
        other = self.wake[Lane.FOLLOW_UPS if lane is Lane.EVENTS else Lane.EVENTS]
        while not self.stop_event.is_set():
            if lane is Lane.FOLLOW_UPS and not self.pages_drained.is_set():
                # Pages first: the lanes share this process's interpreter, and a follow-up (a related-incident
                # lookup ranks thousands of incidents) would slow every page sent meanwhile. It runs once the
                # events lane has nothing due (or waits on PagerDuty's rate limit).
                self.pages_drained.wait(idle_sleep)
                continue
            failed = False
            try:
                worked = self.run_once(lane)
            except DatabaseBusy as exc:  # another writer holds the database; the job stays in the outbox
                log.warning("delivery (%s): %s; retrying", lane.value, exc.message)
                worked = False
            except Exception:  # the worker must outlive a database hiccup; the job stays in the outbox
                log.exception("delivery loop error (%s); retrying", lane.value)
                worked, failed = False, True
            if lane is Lane.EVENTS:
                if worked:
                    self.pages_drained.clear()
                else:
                    self.pages_drained.set()
            if worked:
                # The job may have queued work for the other lane, which may be asleep: a delivered page queues
                # its set-up and notes; a follow-up may queue a page (a resolve found by reconciliation).
                other.set()
                continue
            if failed:
                wait, rate_limited = ERROR_RETRY_SECONDS, False
            else:
                wait, rate_limited = self._idle_wait(lane, idle_sleep)
            if rate_limited:
                # New events cannot leave before the budget frees: the stage's wake-ups would only make the
                # lane look again (a query over every queued event) many times a second.
                self.stop_event.wait(wait)
            else:
                wake.wait(wait)
            wake.clear()

    def _idle_wait(self, lane: Lane, idle_sleep: float) -> tuple[float, bool]:
        """How long `lane` sleeps: until its next job may be leased, at most `idle_sleep`; and whether the Events
        API budget is spent (the events lane then sleeps until it frees, whatever is due)."""
        now = self.clock()
        try:
            if lane is Lane.EVENTS:
                limited_until = self.rate_limited_until(now)
                if limited_until is not None:
                    return max(0.01, limited_until - now), True
                due = self.store.next_due_at(now, only_kinds=(JobKind.EVENT,))
            else:
                due = self.store.next_due_at(now, exclude_kinds=(JobKind.EVENT,))
        except Exception:  # the database is down: run_once says so on the next turn
            return ERROR_RETRY_SECONDS, False
        # Up to a fifth shorter, at random: the two lanes and the stage would otherwise wake together (and so would
        # the replicas on one database), and wake each other up contending for the interpreter's lock.
        fallback = idle_sleep * random.uniform(0.8, 1.0)
        wait = fallback if due is None else min(fallback, due - now)
        # A job due by now that could not be leased was taken a moment ago by another worker (PostgreSQL's SKIP
        # LOCKED) or became due since the lease was tried: look again almost at once.
        return max(0.01, wait), False


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def error_summary(exc: BaseException, secrets: Iterable[str] = (), limit: int = SUMMARY_LENGTH) -> str:
    """`TypeName: message`, the message's first line only, every secret replaced by `***`, at most `limit`
    characters: what a job keeps of the exception that ended its attempt (shown by the API)."""
    # Redact before cutting: a secret cut in half by the limit or the line break would no longer match.
    message = _redact(str(exc), secrets).strip()
    first = message.splitlines()[0] if message else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def redacted_traceback(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The exception's full traceback for the log, with every secret replaced by `***`."""
    return _redact("".join(traceback.format_exception(exc)).rstrip(), secrets)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def print_dry_run_event(event: dict[str, Any], out: TextIO) -> None:
    """The line a dry run prints for an event it does not send: its action, dedup key and, for a trigger, our
    severity, PagerDuty's event severity and the summary (a resolve has no severity).

    Who would be requested is not here: that is the set-up's to say (`bridge.followups.dry_run`), and a P2 requests
    nobody whatever its rule's roles.
    """
    payload = event.get("payload") or {}
    details = payload.get("custom_details") or {}
    line = {
        "dry_run": True,
        "event_action": event.get("event_action"),
        "dedup_key": event.get("dedup_key"),
        "severity": details.get("severity"),
        "pagerduty_severity": payload.get("severity"),
        "summary": payload.get("summary"),
    }
    line = {k: v for k, v in line.items() if v is not None}
    out.write(f"{DRY_RUN_LABEL}: {json.dumps(line)}\n")
    out.flush()
