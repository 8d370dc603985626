"""Retention: the worker prunes what the bridge no longer needs, so the database does not grow without bound.

`BRIDGE_RETENTION` (default 30d, at least 1d; `off` or 0 keeps everything) is the age past which these go:
- **decided alerts** received before the cut-off, whose incident (if any) was resolved before the cut-off too, except
  each incident's first alert (the incident list and post-mortem drafts show it);
- **finished jobs** (delivered, dry run, superseded, discarded) last changed before the cut-off, whose incident (if
  any) was resolved before it, except the newest job of each kind (the reconciliation pass reads its newest one);
- **notices** created before the cut-off.

Never pruned: undecided journal entries, alerts and jobs of open incidents (or of incidents resolved within the
retention), pending, sending and dead jobs (a dead letter waits for an operator), incidents themselves with their
timeline, members and post-mortems (one row per incident, the history related-incident lookups search), silences,
the audit log and rulesets.

A pruned alert's repeat: its `(source, source_event_id)` is forgotten, so the same event sent again is taken as new
and decided again (a trigger of a resolved incident opens or reopens one and pages). Senders retry for far less than
a day (SNS: minutes by default; Pub/Sub: until acknowledged, and a 2xx acknowledges it; Alertmanager re-sends a
firing alert every repeat_interval, but its incident is open, so its alerts are kept), hence the 1-day minimum.

How: candidates are chosen on a read connection (no lock held), then deleted `batch` rows at a time, each batch its
own short write transaction that re-checks the conditions a concurrent write could change (a reopened incident, a
retried job), with a pause between batches so receipts and the pipeline get the writer lock in between. On SQLite
the file keeps its size (freed pages are reused by new rows); `VACUUM` returns them to the file system.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bridge.store.base import StoreBase
from bridge.store.schema import RESOLVED, alerts, incidents, jobs, notices

log = logging.getLogger("bridge.retention")

# Jobs in these states are done with: nothing will lease them again.
FINISHED_JOB_STATES = ("delivered", "dry_run", "superseded", "discarded")
BATCH = 500
PAUSE_SECONDS = 0.05
FIRST_PASS_AFTER_SECONDS = 300.0
PASS_INTERVAL_SECONDS = 3600.0


def cutoff(now: float, retention_seconds: float) -> float | None:
    """The time before which rows may be pruned; None when retention is off (0)."""
    if retention_seconds <= 0:
        return None
    return now - retention_seconds


def _resolved_before(before: float) -> sa.Select[Any]:
    return sa.select(incidents.c.id).where(incidents.c.status == RESOLVED, incidents.c.resolved_at < before)


def _alert_candidates(before: float, batch: int) -> sa.Select[Any]:
    earlier = alerts.alias("earlier")
    is_first = ~sa.exists().where(earlier.c.incident_id == alerts.c.incident_id, earlier.c.id < alerts.c.id)
    return (sa.select(alerts.c.id)
            .where(alerts.c.decided_at.is_not(None), alerts.c.received_at < before,
                   sa.or_(alerts.c.incident_id.is_(None),
                          sa.and_(alerts.c.incident_id.in_(_resolved_before(before)), ~is_first)))
            .order_by(alerts.c.id).limit(batch))


def _alert_delete(ids: list[int], before: float) -> sa.Delete:
    # Re-checked in the write: the incident may have reopened since the candidates were read.
    return alerts.delete().where(
        alerts.c.id.in_(ids), alerts.c.decided_at.is_not(None),
        sa.or_(alerts.c.incident_id.is_(None), alerts.c.incident_id.in_(_resolved_before(before))))


def _job_candidates(before: float, batch: int) -> sa.Select[Any]:
    newer = jobs.alias("newer")
    newest_of_kind = ~sa.exists().where(newer.c.kind == jobs.c.kind, newer.c.id > jobs.c.id)
    return (sa.select(jobs.c.id)
            .where(jobs.c.state.in_(FINISHED_JOB_STATES), jobs.c.updated_at < before,
                   sa.or_(jobs.c.incident_id.is_(None), jobs.c.incident_id.in_(_resolved_before(before))),
                   ~newest_of_kind)
            .order_by(jobs.c.id).limit(batch))


def _job_delete(ids: list[int], before: float) -> sa.Delete:
    # Re-checked: an operator may have retried it, or its incident reopened.
    return jobs.delete().where(
        jobs.c.id.in_(ids), jobs.c.state.in_(FINISHED_JOB_STATES), jobs.c.updated_at < before,
        sa.or_(jobs.c.incident_id.is_(None), jobs.c.incident_id.in_(_resolved_before(before))))


def _notice_candidates(before: float, batch: int) -> sa.Select[Any]:
    return sa.select(notices.c.id).where(notices.c.created_at < before).order_by(notices.c.id).limit(batch)


def _notice_delete(ids: list[int], before: float) -> sa.Delete:
    return notices.delete().where(notices.c.id.in_(ids))


KINDS: dict[str, tuple[Callable[[float, int], sa.Select[Any]], Callable[[list[int], float], sa.Delete]]] = {
    "alerts": (_alert_candidates, _alert_delete),
    "jobs": (_job_candidates, _job_delete),
    "notices": (_notice_candidates, _notice_delete),
}


@dataclass
class PruneResult:
    """Rows pruned per kind in one pass, and the batches (write transactions) it took."""

    pruned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.pruned.values())


def prune_batch(store: StoreBase, kind: str, before: float, batch: int = BATCH) -> int:
    """Delete at most `batch` prunable rows of `kind` received/changed before `before`; the number deleted."""
    candidates, delete = KINDS[kind]
    with store.engine.connect() as conn:  # read only: no write lock while choosing
        ids = [int(i) for i in conn.execute(candidates(before, batch)).scalars()]
    if not ids:
        return 0
    with store.transaction(serialized=True) as conn:
        return int(conn.execute(delete(ids, before)).rowcount or 0)


def prune(store: StoreBase, now: float, retention_seconds: float, *, batch: int = BATCH,
          pause: float = PAUSE_SECONDS, stop: threading.Event | None = None) -> PruneResult:
    """One pass: every kind, batch after batch, until nothing old is left (or `stop` is set)."""
    result = PruneResult()
    before = cutoff(now, retention_seconds)
    if before is None:
        return result
    for kind in KINDS:
        while not (stop is not None and stop.is_set()):
            deleted = prune_batch(store, kind, before, batch)
            result.batches += 1
            result.pruned[kind] += deleted
            if deleted < batch:
                break
            if pause:
                (stop or threading.Event()).wait(pause)  # let receipts and the pipeline have the writer lock
    return result


class Pruner:
    """The worker's retention thread: a pass `first_after` seconds after start, then every `interval`."""

    def __init__(self, store: StoreBase, retention_seconds: float, *, clock: Callable[[], float] = time.time,
                 interval: float = PASS_INTERVAL_SECONDS, first_after: float = FIRST_PASS_AFTER_SECONDS) -> None:
        self.store = store
        self.retention_seconds = retention_seconds
        self.clock = clock
        self.interval = interval
        self.first_after = first_after
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Loop until `stop()`; a failed pass (a busy database) is logged and tried at the next interval."""
        if self.retention_seconds <= 0:
            log.info("retention is off (BRIDGE_RETENTION): nothing is pruned")
            return
        wait = self.first_after
        while not self.stop_event.wait(wait):
            wait = self.interval
            try:
                result = prune(self.store, self.clock(), self.retention_seconds, stop=self.stop_event)
            except Exception as exc:  # the next pass tries again; pruning never stops the worker
                log.warning("retention pass failed, next in %.0f s: %s: %s", self.interval, type(exc).__name__,
                            str(exc).splitlines()[0] if str(exc) else "")
                continue
            if result.total:
                log.info("retention: pruned %s in %d batches", ", ".join(
                    f"{n} {kind}" for kind, n in result.pruned.items()), result.batches)

    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand."""
        self.stop_event.set()
