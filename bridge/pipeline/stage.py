"""The pipeline stage: the journal, in order and in batches, turned into incidents, timeline entries and outbox jobs.

This is the order of the steps for each journal entry, in one place (as Alertmanager's notify pipeline is):

1. silences: a covering silence turns a page into a suppression (`silences.apply.apply_silences`);
2. the alert's own group: an open incident it belongs to;
3. inhibition: a more severe open incident of an inhibiting rule (`inhibit.find_inhibitor`);
4. reopening: its group's incident resolved within `reopen_within`;
5. storms: past the threshold of new incidents of its rule and monitor (`storm.in_storm`);
6. the policy (`policy.plan`, pure): create, attach, raise, re-page, resolve or reopen, and which event to send;
7. the store carries the plan out and queues the Events API event;
8. heartbeats: the alert is recorded as a beat of each heartbeat it matched (`bridge.pipeline.heartbeats`).

Each batch is one transaction: a crash mid-batch rolls it back and the next run decides the same entries again,
as of the same receipt times, so the results are the same. The stage runs in the worker process (never in the web
workers): woken by the journal's signal (`wake`), it decides until the journal is empty, then tells the
delivery worker.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bridge.delivery.events import build_event
from bridge.errors import DatabaseBusy
from bridge.logformat import log_fields
from bridge.model import Action, Alert, Decision, Notice
from bridge.pipeline import inhibit, storm
from bridge.pipeline.policy import EventAction, PolicyContext, plan
from bridge.pipeline.silences.apply import apply_silences, load_silence
from bridge.pipeline.silences.model import Silence
from bridge.pipeline.wake import Listener, listener_for
from bridge.rules.engine import HEARTBEATS
from bridge.rules.model import Ruleset, RulesetSettings
from bridge.store import JOURNAL_CHANNEL, Accepted, JournalEntry, PipelineBatch, Store

log = logging.getLogger(__name__)

# Entries read per transaction, at most (the time budget below usually ends a batch first).
BATCH_SIZE = 200
# And at most this long per transaction: on SQLite the batch holds the database's one writer (`store/writer.py`)
# and every receipt waits for it, so a long batch is a slow webhook answer. A few milliseconds is dozens of alerts,
# so commits stay amortized.
BATCH_SECONDS = 0.005


def decide_batch(batch: PipelineBatch, ruleset: Ruleset | None, *,
                 budget: float | None = None) -> int:
    """Decide the entries of the batch in order, stopping after `budget` seconds (the rest stay undecided, for
    the next batch); returns how many were decided."""
    oldest = batch.oldest
    if oldest is None:
        return 0
    deadline = time.perf_counter() + budget if budget is not None else None
    settings = ruleset.settings if ruleset is not None else RulesetSettings()
    specs = inhibit.inhibiting_rules(ruleset)
    silences = [load_silence(r) for r in batch.silence_records(oldest)]
    decided = 0
    for entry in batch.entries():
        # Every line about the entry (its decision, an error) names it and the request that brought it.
        with log_fields(request_id=entry.request_id, alert_id=entry.id, dedup_key=entry.dedup_key,
                        source=entry.alert.source):
            decide_entry(batch, entry, settings, specs, silences)
        decided += 1
        if deadline is not None and time.perf_counter() >= deadline:
            break
    return decided


def decide_entry(batch: PipelineBatch, entry: JournalEntry, settings: RulesetSettings,
                 specs: Mapping[str, Mapping[str, Any]], silences: Sequence[Silence]) -> None:
    """Steps 1-7 for one entry (see the module's docstring)."""
    now = datetime.fromtimestamp(entry.journaled_at, UTC)
    alert = entry.alert
    decision = apply_silences(alert, entry.decision, list(silences), now)
    ctx = context(batch, entry, alert, decision, settings, specs)
    step = plan(alert, decision, ctx, now)
    applied = batch.apply(entry, step, decision, storm.storm_key(alert, decision))
    log.info("pipeline: alert %d decided: %s, incident %s, event %s", entry.id, decision.action.value,
             applied.incident_id, step.event.value if step.event is not None else "none",
             extra={"action": decision.action.value, "incident_id": applied.incident_id})
    beats = entry.decision.details.get(HEARTBEATS)
    if beats:  # whatever the silences and the plan: any matching alert proves its source alive
        batch.record_beats(entry, [str(name) for name in beats])
    if step.event is None:
        return
    severity = step.severity or decision.severity
    if step.event is EventAction.TRIGGER and severity is not None and decision.severity is not severity:
        decision = replace(decision, severity=severity, urgency=severity.urgency)
    payload = build_event(step.event, alert, decision, applied.dedup_key, applied.incident_id)
    due = step.not_before.timestamp() if step.not_before else entry.journaled_at
    batch.enqueue_event(entry, applied, step.event, payload, due, severity.rank if severity else 4)


def context(batch: PipelineBatch, entry: JournalEntry, alert: Alert, decision: Decision,
            settings: RulesetSettings, specs: Mapping[str, Mapping[str, Any]]) -> PolicyContext:
    """Steps 2-5: the incidents around the alert, read from the batch's transaction."""
    own = batch.open_incident_of_group(entry.dedup_key)
    if own is not None or decision.action is not Action.PAGE or decision.severity is None:
        return PolicyContext(incident=own)
    if specs:
        found = inhibit.find_inhibitor(alert, decision, batch.inhibit_candidates(list(specs)), specs)
        if found is not None:
            return PolicyContext(inhibitor=batch.state_of(found.incident_id), inhibitor_rule=found.rule)
    if settings.reopen_within > 0:
        resolved = batch.recently_resolved(entry.dedup_key, entry.journaled_at - settings.reopen_within)
        if resolved is not None:
            return PolicyContext(recently_resolved=resolved, reopen_within=settings.reopen_within)
    if decision.rule and settings.storm_threshold > 0:
        count, anchor = batch.storm_incidents(storm.storm_key(alert, decision),
                                              entry.journaled_at - settings.storm_window)
        if storm.in_storm(count, settings.storm_threshold) and anchor is not None:
            return PolicyContext(storm_anchor=anchor, storm_count=count)
    return PolicyContext()


class PipelineStage:
    """Decides the journal. `run_once` decides one batch; `run` loops, woken by the journal's signal."""

    def __init__(self, store: Store, current_ruleset: Callable[[], Ruleset | None], *, database_url: str = "",
                 batch_size: int = BATCH_SIZE, batch_seconds: float | None = BATCH_SECONDS,
                 on_decided: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.current_ruleset = current_ruleset
        self.database_url = database_url
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.on_decided = on_decided
        self.stop_event = threading.Event()

    def run_once(self) -> int:
        """Decide the next batch of the journal; returns how many entries were decided (or set aside)."""
        # The ruleset's settings (storm threshold, windows) as of now: a reload applies to what is decided next.
        ruleset = self.current_ruleset()
        try:
            with self.store.pipeline_batch(self.batch_size) as batch:
                return decide_batch(batch, ruleset, budget=self.batch_seconds)
        except (sa.exc.DBAPIError, DatabaseBusy):
            raise  # the database is down, locked or full: the batch waits for it, untouched
        except Exception as exc:  # our bug, or an entry we cannot read: find it, so it cannot stall the journal
            log.error("pipeline: a batch failed (%s: %s); deciding its entries one at a time", type(exc).__name__,
                      exc)
            return self._decide_singly(ruleset)

    def _decide_singly(self, ruleset: Ruleset | None) -> int:
        """Decide the oldest entry alone; an entry that fails alone is set aside as `failed` and logged."""
        try:
            with self.store.pipeline_batch(1) as batch:
                return decide_batch(batch, ruleset)
        except (sa.exc.DBAPIError, DatabaseBusy):
            raise
        except Exception as exc:
            with self.store.pipeline_batch(1) as batch:
                entries = list(batch.entry_ids)
            for alert_id in entries:
                if self.store.set_aside(alert_id, f"{type(exc).__name__}: {exc}", time.time()):
                    log.exception("pipeline: alert %s cannot be decided; set aside as failed (it pages "
                                  "nothing): %s", alert_id, exc)
            return len(entries)

    def drain(self) -> int:
        """Decide until the journal is empty; returns how many entries were decided."""
        total = 0
        while True:
            done = self.run_once()
            total += done
            if not done:
                return total
            self.on_decided()
            if self.batch_seconds:
                # Step aside as long as a batch may take: receipts waiting for the writer get it (a lock is not a
                # queue, and a stage that began its next batch at once would often win it again).
                self.stop_event.wait(self.batch_seconds)

    def run(self) -> None:
        """Loop until `stop_event` is set: drain the journal, then wait for its signal (or the fallback poll).

        A signal that finds nothing to decide still calls `on_decided`: it may announce jobs queued elsewhere (by
        another replica's stage, which took the batch; by an operator's retry), and the delivery lanes sleep until
        woken.
        """
        listener: Listener = listener_for(self.store.engine, self.database_url, JOURNAL_CHANNEL)
        log.info("pipeline stage started (%s)", type(listener).__name__)
        signalled = False
        try:
            while not self.stop_event.is_set():
                try:
                    started = time.perf_counter()
                    decided = self.drain()
                    if decided:
                        log.debug("pipeline: decided %d journal entries in %.3f s", decided,
                                  time.perf_counter() - started)
                    elif signalled:
                        self.on_decided()
                except DatabaseBusy as exc:  # another writer holds the database: the entries stay in the journal
                    log.warning("pipeline stage: %s; retrying", exc.message)
                    self.stop_event.wait(1.0)
                    continue
                except Exception:  # the database is down: the entries stay in the journal
                    log.exception("pipeline stage error; retrying")
                    self.stop_event.wait(1.0)
                    continue
                try:
                    # Up to a fifth shorter, at random: see `DeliveryWorker._idle_wait`.
                    signalled = listener.wait(listener.fallback_seconds * random.uniform(0.8, 1.0))
                except Exception as exc:  # the LISTEN connection was lost (a restart, a failover): listen anew
                    log.warning("pipeline stage: lost its wake-up signal (%s: %s); setting it up again",
                                type(exc).__name__, exc)
                    with contextlib.suppress(Exception):
                        listener.close()
                    self.stop_event.wait(1.0)
                    listener = listener_for(self.store.engine, self.database_url, JOURNAL_CHANNEL)
                    signalled = True  # whatever was signalled meanwhile is lost: look now
        finally:
            listener.close()
        log.info("pipeline stage stopped")

    def stop(self) -> None:
        """Ask `run` to return after the batch in hand."""
        self.stop_event.set()


def accept_and_decide(store: Store, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Notice],
                      now: datetime, ruleset: Ruleset | None = None) -> list[Accepted]:
    """Journal alerts and decide them at once, in this process: what `serve` does across its two processes,
    for tests and tools. Returns the entries as the API shows them after the stage."""
    results = store.journal(decided, found, now)
    PipelineStage(store, lambda: ruleset).drain()
    return [store.accepted(r.alert_id, duplicate=r.duplicate) for r in results]
