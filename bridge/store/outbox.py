"""`OutboxStore`: the delivery outbox. Jobs (PagerDuty events and the follow-ups: incident set-up, timers, notes)
are queued in the transaction that records what they follow, leased by workers (never overtaking an earlier job of
their dedup key), and finished as delivered, retried later, or dead-lettered for an operator to retry or discard.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.errors import Conflict
from bridge.store.audit_records import AuditStore
from bridge.store.schema import (
    JOURNAL_CHANNEL,
    ORDERED_KINDS,
    JobKind,
    _inserted_id,
    _iso,
    alerts,
    incidents,
    jobs,
    timeline,
)

log = logging.getLogger("bridge.store")


@dataclass(frozen=True)
class NewJob:
    """A follow-up job to queue in the transaction that records what it follows (see `Store.job_delivered`)."""

    kind: str
    dedup_key: str
    incident_id: int | None
    payload: dict[str, Any]
    priority: int = 5
    delay: float = 0.0          # seconds after the recording transaction's time
    dedupe: str | None = None   # at most one job with this key, ever


class OutboxStore(AuditStore):
    """The jobs table: queueing, leasing, finishing, and the operator's view and actions (retry, discard)."""

    def _enqueue(self, conn: Connection, kind: str, dedup_key: str, incident_id: int | None,
                 alert_id: int | None, payload: Any, now: float, due: float, *, action: str = "",
                 priority: int = 5, dedupe: str | None = None) -> int:
        """Insert one job; with `dedupe`, nothing when a job with that key exists (returns 0 then)."""
        values = dict(kind=kind, dedup_key=dedup_key, incident_id=incident_id, alert_id=alert_id,
                      action=action or kind, priority=priority, payload_json=json.dumps(payload, default=str),
                      state="pending", attempts=0, next_attempt_at=due, created_at=now, updated_at=now,
                      dedupe=dedupe[:255] if dedupe else None, due_since=due)
        if dedupe is None:
            return int(_inserted_id(conn.execute(jobs.insert().values(**values))))
        row = conn.execute(self._job_insert_once.values(**values)).first()
        return int(row[0]) if row is not None else 0

    def enqueue(self, kind: str, dedup_key: str, incident_id: int | None, payload: Any, now: float,
                due: float | None = None, *, action: str = "", priority: int = 5, dedupe: str | None = None) -> int:
        """Add one job to the outbox (follow-ups: incident setup, escalation checks, notes...).

        With `dedupe`, at most one job with that key is ever queued: a repeat returns 0 and queues nothing.
        """
        with self.transaction(serialized=True) as conn:
            return self._enqueue(conn, kind, dedup_key, incident_id, None, payload, now,
                                 now if due is None else due, action=action, priority=priority, dedupe=dedupe)

    def enqueue_all(self, conn: Connection, new_jobs: Sequence[NewJob], now: float) -> None:
        """Queue follow-up jobs on an open transaction (the one that records what they follow)."""
        for job in new_jobs:
            self._enqueue(conn, job.kind, job.dedup_key, job.incident_id, None, job.payload, now,
                          now + job.delay, priority=job.priority, dedupe=job.dedupe)

    def lease_job(self, now: float, lease_seconds: float = 60.0, owner: str = "",
                  exclude_kinds: Sequence[str] = (), only_kinds: Sequence[str] = ()) -> dict[str, Any] | None:
        """Take the next due job, most severe first, never overtaking an earlier job of the same dedup key.

        A job whose lease expired (its worker died mid-send) is due again.
        """
        pending, expired = _lease_queries(tuple(exclude_kinds), tuple(only_kinds), for_update=self.is_postgres)
        params = {"now": now}

        def next_due(conn: Connection) -> Any:
            # A job due by its time, or one whose worker's lease ran out (it died mid-send): the more urgent.
            found = [r for r in (conn.execute(pending, params).first(), conn.execute(expired, params).first())
                     if r is not None]
            return min(found, key=lambda r: (r.priority, r.id)) if found else None

        if not self.is_postgres:
            # Look before taking SQLite's write lock: an idle or rate-limited worker polls often, and a poll that
            # finds nothing must not hold up a receipt.
            with self.engine.connect() as probe:
                if next_due(probe) is None:
                    return None
        with self.transaction() as conn:
            row = next_due(conn)
            if row is None:
                return None
            conn.execute(jobs.update().where(jobs.c.id == row.id).values(
                state="sending", lease_until=now + lease_seconds, leased_by=owner, updated_at=now))
            out = dict(row._mapping)
            out["payload"] = json.loads(row.payload_json)
            # The request that brought the job's alert, for the delivery worker's log lines (one lookup by key).
            out["request_id"] = (conn.execute(sa.select(alerts.c.request_id).where(alerts.c.id == row.alert_id))
                                 .scalar() if row.alert_id is not None else None)
            return out

    def release_orphaned_leases(self, host: str, is_alive: Any, now: float) -> int:
        """Give back jobs leased by workers of this host that no longer run (killed mid-send).

        Without this a killed worker's job would wait for its lease to expire. Jobs leased on other hosts are
        left to expire: we cannot tell whether those workers live.
        """
        released = 0
        with self.transaction() as conn:
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.leased_by).where(jobs.c.state == "sending")).all()
            for job_id, owner in rows:
                owner_host, _, pid = (owner or "").rpartition(":")
                if owner_host == host and pid.isdigit() and not is_alive(int(pid)):
                    conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "sending").values(
                        state="pending", lease_until=None, leased_by=None, next_attempt_at=now, updated_at=now))
                    released += 1
        return released

    def next_due_at(self, now: float, exclude_kinds: Sequence[str] = (),
                    only_kinds: Sequence[str] = ()) -> float | None:
        """When a job (of `only_kinds`, not of `exclude_kinds`) may next be leased, as of `now`; None when none is
        pending or being sent.

        That is the earliest due time of a pending job that no earlier job of its key holds back, or the end of a
        lease (a job being sent goes out again if its worker died). A job held back is left out: its time may
        have passed long ago while the job before it waits for a retry, and the job before it is counted. An
        idle worker sleeps until then.
        """
        pending, leased = _next_due_queries(tuple(exclude_kinds), tuple(only_kinds))
        with self.engine.connect() as conn:
            times = [t for t in (conn.execute(pending, {"now": now}).scalar(),
                                 conn.execute(leased, {"now": now}).scalar()) if t is not None]
        return min(times) if times else None

    def job_delivered(self, job_id: int, now: float, *, dry_run: bool, response: dict[str, Any] | None,
                      then: Sequence[NewJob] = ()) -> None:
        """Mark a job delivered, note it on the incident's timeline, and queue the follow-ups `then` in the same
        transaction: a crash can never leave a delivered page without its set-up (roles, responders)."""
        with self.transaction(serialized=bool(then)) as conn:
            self.enqueue_all(conn, then, now)
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state="dry_run" if dry_run else "delivered", delivered_at=now, updated_at=now,
                attempts=row.attempts + 1, lease_until=None, last_error=None))
            if row.incident_id is not None and row.kind == JobKind.EVENT:
                if row.action == "trigger":
                    conn.execute(incidents.update().where(incidents.c.id == row.incident_id).values(
                        last_paged_at=now))
                payload = json.loads(row.payload_json)
                sev = (payload.get("payload") or {}).get("severity", "")
                what = "page" if row.action == "trigger" else "resolution"
                text = (f"{'[dry-run] ' if dry_run else ''}PagerDuty {row.action} "
                        + ("printed, not sent" if dry_run else "sent")
                        + (f" (severity {sev})" if sev else "") + f", dedup key {row.dedup_key}")
                conn.execute(timeline.insert().values(incident_id=row.incident_id, at=now, kind=what,
                                                      description=text, personnel="incident-bridge",
                                                      actions=f"Events API {row.action}"))

    def job_failed(self, job_id: int, now: float, *, error: str, reason: str, retry_at: float | None,
                   internal: bool = False) -> None:
        """Record a failed attempt: back to pending at `retry_at`, or dead (dead-letter) when None.

        `internal`: the attempt failed on our own exception, counted in `internal_failures` (the worker bounds
        those). A job an operator discarded while a slow worker still held its expired lease stays discarded.
        """
        with self.transaction() as conn:
            row = conn.execute(sa.select(jobs.c.attempts, jobs.c.internal_failures, jobs.c.state)
                               .where(jobs.c.id == job_id)).one()
            if row.state == "discarded":
                log.info("job %s was discarded during its attempt; it stays discarded (%s)", job_id, reason)
                return
            values: dict[str, Any] = {"attempts": row.attempts + 1, "last_error": error[:2000], "reason": reason,
                                      "updated_at": now, "lease_until": None}
            if internal:
                values["internal_failures"] = (row.internal_failures or 0) + 1
            if retry_at is None:
                values["state"] = "dead"
            else:
                values["state"] = "pending"
                values["next_attempt_at"] = retry_at
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def release_job(self, job_id: int, now: float, retry_at: float) -> None:
        """Give a leased job back without counting an attempt (rate limit reached, shutting down)."""
        with self.transaction() as conn:
            # Put off on purpose (no budget, shutting down): not overdue until its new time.
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "sending").values(
                state="pending", next_attempt_at=retry_at, due_since=retry_at, lease_until=None, updated_at=now))

    def events_sent_since(self, since: float) -> int:
        """How many events were delivered after `since` (for the per-routing-key rate limit)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.kind == JobKind.EVENT, jobs.c.state == "delivered", jobs.c.delivered_at > since)).scalar() or 0)

    def latest_job(self, kind: str) -> dict[str, Any] | None:
        """The newest job of `kind` (None when there is none): its id, state, parsed payload and times as seconds
        since the epoch (`created_at`, `updated_at`, `delivered_at`, `next_attempt_at`)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs.c.id, jobs.c.state, jobs.c.payload_json, jobs.c.created_at,
                                         jobs.c.updated_at, jobs.c.delivered_at, jobs.c.next_attempt_at)
                               .where(jobs.c.kind == kind).order_by(jobs.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return {"id": row.id, "state": row.state, "payload": json.loads(row.payload_json),
                "created_at": row.created_at, "updated_at": row.updated_at, "delivered_at": row.delivered_at,
                "next_attempt_at": row.next_attempt_at}

    def oldest_due_job(self, now: float) -> tuple[float, int] | None:
        """Since when the longest-waiting unfinished job has been due, and its id; None when no job is due.

        "Pending" for self-monitoring (`bridge.health`): pending or being sent, and due by `now`. A job counts
        from its first due time (`due_since`), and a failed attempt's retry does not restart it: a page PagerDuty
        has refused with 500s for ten minutes has waited ten minutes. Jobs put off on purpose (a timer not yet due,
        a follow-up waiting for REST budget, events over the per-minute limit) count from their new time.
        """
        since = sa.func.coalesce(jobs.c.due_since, jobs.c.next_attempt_at)
        query = (sa.select(since.label("since"), jobs.c.id)
                 .where(jobs.c.state.in_(("pending", "sending")), since <= now)
                 .order_by(since, jobs.c.id).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (float(row.since), int(row.id))

    def job_counts(self) -> dict[str, int]:
        """Number of jobs in each state."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all()
        return {state: int(n) for state, n in rows}

    def list_jobs(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Jobs, newest first (the dead-letter view is `state="dead"`)."""
        q = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if state:
            q = q.where(jobs.c.state == state)
        with self.engine.connect() as conn:
            return [_job_json(r) for r in conn.execute(q)]

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        """One job as JSON, by id (None when there is no such job)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return _job_json(row) if row is not None else None

    def retry_job(self, job_id: int, now: float, *, actor: str = "") -> dict[str, Any] | None:
        """Send a dead-lettered job again, once an operator has dealt with its cause: it becomes pending, due `now`.

        Returns the job's JSON after the change, None when there is no such job. `attempts`, `last_error` and
        `reason` are kept: they are the job's history, and a trigger ever attempted may have reached PagerDuty,
        which decides whether its incident's recovery sends a resolve (resetting them would forget that). The
        count of our own failures restarts, so the retried job gets the whole bound again; PagerDuty's retryable
        failures keep the persisted backoff. Jobs of one dedup key still leave in order: the retried job goes
        before the later pending ones of its key.

        Raises `Conflict` when the job is not dead: pending or sending (it goes out anyway), delivered or
        dry_run, superseded or discarded (final); and when it is an event or incident set-up whose dedup key has
        a later job of its kind already sent or being sent (it would go out of order: a trigger re-opening an
        incident after its resolve). With `actor`, audited as `job.retry` in the same transaction.
        """
        with self.transaction() as conn:
            row = self._job_for_update(conn, job_id)
            if row is None:
                return None
            if row.state != "dead":
                raise Conflict(f"job {job_id} is {row.state}, not dead: {_RETRY_REFUSED.get(row.state, '')}")
            if row.kind in ORDERED_KINDS:
                later = sa.select(jobs.c.id, jobs.c.state).where(
                    jobs.c.dedup_key == row.dedup_key, jobs.c.kind == row.kind, jobs.c.id > row.id
                ).order_by(jobs.c.id)
                if self.is_postgres:
                    # Lock the later jobs of the key: a worker leasing one now is waited for (and seen as
                    # sending), and none is leased before this retry commits and blocks them.
                    later = later.with_for_update()
                gone = [r for r in conn.execute(later).all() if r.state in ("sending", "delivered", "dry_run")]
                if gone:
                    raise Conflict(f"job {job_id} cannot be retried: job {gone[0].id} of the same dedup key "
                                   f"({row.dedup_key}) was created after it and is already {gone[0].state}; "
                                   f"sending this {row.action} now would put it out of order")
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state="pending", next_attempt_at=now, due_since=now, lease_until=None, leased_by=None,
                internal_failures=0, updated_at=now))
            if actor:
                self._audit(conn, now, actor, "job.retry", str(job_id), _job_audit(row))
            self._wake_workers(conn)
            return _job_json(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one())

    def discard_job(self, job_id: int, now: float, *, actor: str = "") -> dict[str, Any] | None:
        """Never send this job: it becomes `discarded`, a final state, and no longer holds back later jobs of its
        dedup key.

        Returns the job's JSON after the change, None when there is no such job. Allowed for a pending or dead
        job, and for one left sending by a worker whose lease has expired (it died or overran; should it still
        report a failure, the job stays discarded). Discarding a discarded job changes nothing. Raises `Conflict`
        while a worker holds a live lease (the send may be reaching PagerDuty right now: discard it once the
        attempt ends), and for a delivered, dry_run or superseded job (already finished). With `actor`, audited
        as `job.discard` in the same transaction.
        """
        with self.transaction() as conn:
            row = self._job_for_update(conn, job_id)
            if row is None:
                return None
            if row.state == "discarded":
                return _job_json(row)
            live_lease = row.state == "sending" and (row.lease_until or 0.0) > now
            if live_lease:
                raise Conflict(f"job {job_id} is being sent right now (leased by {row.leased_by} until "
                               f"{_iso(row.lease_until)}): discard it once this attempt has ended")
            if row.state not in ("pending", "dead", "sending"):
                raise Conflict(f"job {job_id} is {row.state}: it has already finished and will not be sent")
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state="discarded", lease_until=None, leased_by=None, updated_at=now))
            if actor:
                self._audit(conn, now, actor, "job.discard", str(job_id), _job_audit(row))
            self._wake_workers(conn)  # the later jobs of its key are free to go
            return _job_json(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one())

    def _wake_workers(self, conn: Connection) -> None:
        """On PostgreSQL, wake every replica's worker when this transaction commits (the journal's channel: the
        stage wakes the delivery lanes after any signal). On SQLite the caller rings the doorbell after the commit
        (`bridge.pipeline.wake.Doorbell`)."""
        if self.is_postgres:
            conn.execute(sa.select(sa.func.pg_notify(JOURNAL_CHANNEL, "")))

    def _job_for_update(self, conn: Connection, job_id: int) -> Any:
        """The job's row, locked on PostgreSQL until the transaction ends (a worker's lease waits, or skips it)."""
        query = sa.select(jobs).where(jobs.c.id == job_id)
        if self.is_postgres:
            query = query.with_for_update()
        return conn.execute(query).first()


def _job_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "dedup_key": r.dedup_key, "incident_id": r.incident_id,
            "alert_id": r.alert_id, "action": r.action, "state": r.state, "attempts": r.attempts,
            "internal_failures": r.internal_failures, "next_attempt_at": _iso(r.next_attempt_at),
            "last_error": r.last_error, "reason": r.reason, "created_at": _iso(r.created_at),
            "updated_at": _iso(r.updated_at), "delivered_at": _iso(r.delivered_at),
            "payload": json.loads(r.payload_json)}


def _job_audit(r: Any) -> dict[str, Any]:
    """What the audit log keeps of a job an operator retried or discarded: the state it was in and why."""
    return {"kind": r.kind, "action": r.action, "dedup_key": r.dedup_key, "incident_id": r.incident_id,
            "from_state": r.state, "attempts": r.attempts, "reason": r.reason, "last_error": r.last_error}


# Why retry_job refuses a job in each state other than dead.
_RETRY_REFUSED = {
    "pending": "it is queued and goes out at its next attempt anyway",
    "sending": "it is being sent right now",
    "delivered": "it was delivered already",
    "dry_run": "it was printed in dry-run mode already (nothing is sent without a routing key)",
    "superseded": "its incident's recovery came before it was delivered; sending it now would page for a "
                  "resolved incident",
    "discarded": "an operator discarded it, which is final",
}


def _held_back(now: sa.BindParameter[float]) -> sa.Exists:
    """An earlier unfinished job of the same key and kind holds this job back (for the kinds that keep order).

    Events of one dedup key leave in order (and so do incident set-ups); timers such as escalation checks wait
    for their time without holding anything back. Only unfinished jobs hold later ones back: a dead, superseded
    or discarded job never goes out by itself, so it must not block its key forever (an operator's retry_job
    makes a dead job pending again, and it then goes before the later ones).
    """
    earlier = jobs.alias("earlier")
    # The earlier jobs of one dedup key are a handful: they are looked up by key (ix_jobs_dedup). `kind || ''`
    # keeps SQLite's planner off ix_jobs_kind, which it chose otherwise (every earlier job of the kind): each
    # lease then read the whole backlog, 0.4-0.6 s a lease after a PagerDuty outage of 1,000 alerts, and the
    # drain took many minutes (issue 16). The same on PostgreSQL, whose planner uses the key's index anyway.
    return sa.exists().where(
        earlier.c.dedup_key == jobs.c.dedup_key, earlier.c.id < jobs.c.id, earlier.c.kind.concat("") == jobs.c.kind,
        jobs.c.kind.in_(ORDERED_KINDS),
        sa.or_(earlier.c.state == "pending", sa.and_(earlier.c.state == "sending", earlier.c.lease_until > now)))


def _of_kinds(query: sa.Select[Any], exclude_kinds: tuple[str, ...], only_kinds: tuple[str, ...]) -> sa.Select[Any]:
    if exclude_kinds:
        query = query.where(jobs.c.kind.not_in(list(exclude_kinds)))
    if only_kinds:
        query = query.where(jobs.c.kind.in_(list(only_kinds)))
    return query


@functools.cache
def _lease_queries(exclude_kinds: tuple[str, ...], only_kinds: tuple[str, ...], *,
                   for_update: bool) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The two statements of a lease, built once per kind filter: the most urgent pending job due by `now`, and
    the most urgent job whose lease expired by `now`. Two indexed queries rather than one with an OR, which
    would scan every job."""
    now: sa.BindParameter[float] = sa.bindparam("now", type_=sa.Float)
    blocked = _held_back(now)
    out = []
    for due in (sa.and_(jobs.c.state == "pending", jobs.c.next_attempt_at <= now),
                sa.and_(jobs.c.state == "sending", jobs.c.lease_until <= now)):
        query = _of_kinds(sa.select(jobs).where(due, ~blocked), exclude_kinds, only_kinds)
        query = query.order_by(jobs.c.priority, jobs.c.id).limit(1)
        if for_update:
            query = query.with_for_update(skip_locked=True)
        out.append(query)
    return out[0], out[1]


@functools.cache
def _next_due_queries(exclude_kinds: tuple[str, ...],
                      only_kinds: tuple[str, ...]) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The two statements of `next_due_at`: the earliest pending job not held back (in due order, so the index on
    (state, next_attempt_at) ends the scan at the first one found), and the earliest end of a lease."""
    now: sa.BindParameter[float] = sa.bindparam("now", type_=sa.Float)
    blocked = _held_back(now)
    pending = _of_kinds(sa.select(jobs.c.next_attempt_at).where(jobs.c.state == "pending", ~blocked),
                        exclude_kinds, only_kinds).order_by(jobs.c.next_attempt_at).limit(1)
    leased = _of_kinds(sa.select(jobs.c.lease_until).where(jobs.c.state == "sending", ~blocked),
                       exclude_kinds, only_kinds).order_by(jobs.c.lease_until).limit(1)
    return pending, leased
