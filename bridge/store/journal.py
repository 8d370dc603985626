"""`JournalStore`: the journal. The receipt appends each alert with the rules engine's decision in one INSERT and
commits before the receiver's 2xx; the pipeline stage then decides the entries in batches (`PipelineBatch`: the
reads that gather each alert's policy context and the writes that carry out its plan, in one transaction).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.errors import DatabaseBusy
from bridge.model import Alert, Decision, Notice, Severity, dedup_key_for
from bridge.pipeline.policy import IncidentState, IncidentStep, MemberStep, Plan
from bridge.store.engine import busy_milliseconds, is_lock_timeout, set_busy_timeout
from bridge.store.heartbeat_records import record_beats
from bridge.store.incident_records import IncidentStore
from bridge.store.schema import (
    _JOURNAL_EXCLUSIVE,
    _JOURNAL_SHARED,
    FAILED,
    JOURNAL_CHANNEL,
    OPEN,
    PENDING,
    RESOLVED,
    JobKind,
    _inserted_id,
    _iso,
    _ts,
    alerts,
    incidents,
    jobs,
    members,
    notices,
    silences,
    timeline,
)
from bridge.store.views import _silence_json

# A storm's digest note waits this long, so it summarises the alerts attached meanwhile.
STORM_DIGEST_DELAY = 60.0

# Alerts per receipt transaction. A big request (an Alertmanager group of 10,000 alerts) is journaled in chunks
# of this many, the writer free between them (SQLite's writer lock; on PostgreSQL the shared lock the stage's
# horizon waits for), so another sender's receipt waits for one chunk at most. Measured on the 2-core machine,
# 10,000 alerts on SQLite: journal() takes 0.45 s in chunks of 250, 500 or 1,000 as in one transaction; the
# longest hold of the writer is 10 to 40 ms in chunks of 500 (about 20 us an insert, more under load), 280 ms in
# one transaction. Smaller chunks would only add commits.
JOURNAL_CHUNK = 500


@dataclass(frozen=True)
class Accepted:
    """The result of receiving one alert; `to_json()` is what the 202 body says about it."""

    alert_id: int
    severity: str | None
    action: str
    rule: str | None
    dedup_key: str
    outcome: str
    incident_id: int | None
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        """The per-alert part of the receiver's answer."""
        # A recovery resolves whatever incident its group has: it has no severity of its own, whatever the rules
        # computed for its (resolved) labels, so the answer says null rather than a misleading "P3".
        severity = None if self.action == "resolve" else self.severity
        out: dict[str, Any] = {"id": self.alert_id, "severity": severity, "action": self.action,
                               "rule": self.rule, "dedup_key": self.dedup_key, "outcome": self.outcome,
                               "incident_id": self.incident_id}
        if self.duplicate:
            out["duplicate"] = True
        return out


class JournalInterrupted(Exception):
    """A chunk of a request could not be journaled after earlier chunks were committed. Those stay accepted: they
    are in the journal and will be decided, and a retry of the same body finds them as duplicates. The cause is
    this exception's `__cause__`."""

    def __init__(self, accepted: Sequence[Accepted], total: int) -> None:
        super().__init__(f"{len(accepted)} of {total} alerts were journaled before a chunk failed")
        self.accepted = list(accepted)
        self.total = total


class JournalStore(IncidentStore):
    """The journal (the alerts table) and the pipeline stage's writes."""

    # -- the journal: receipt -----------------------------------------------------------------------------

    def journal(self, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Notice], now: datetime, *,
                chunk: int = JOURNAL_CHUNK,
                on_commit: Callable[[Sequence[Accepted]], None] | None = None,
                request_id: str | None = None) -> list[Accepted]:
        """Append alerts and the rules engine's decisions to the journal and commit: what a 2xx promises.

        One INSERT per alert and no read before it: a repeat of an accepted (source, source_event_id) is absorbed
        by the unique constraint (insert ... on conflict do nothing) and answered with the stored entry, whose
        outcome is the pipeline's by then or still "pending". New entries are "pending": the pipeline stage
        decides their outcome (incident, page) after the answer. PostgreSQL: the pipeline stage is notified on
        commit; on SQLite the caller rings the stage's doorbell (`bridge.pipeline.wake`), from `on_commit`.

        A big request is committed in transactions of `chunk` alerts (the notices go with the first), and the
        writer is released between them: another sender's receipt waits for one chunk at most, never for the
        whole request. `on_commit` is called with each chunk's results once it is committed, so the stage can
        start on the first chunk while the rest is written. When a chunk fails after others committed, those stay
        (a retry of the same body finds them as duplicates) and `JournalInterrupted` says how many; when the
        first fails, its own error is raised and nothing is stored. `request_id` (the receipt's, see
        `bridge.web.requestid`) is kept with each entry, for the log lines of the stage and the delivery worker.
        """
        results: list[Accepted] = []
        for start in range(0, max(len(decided), 1), chunk):
            part = decided[start:start + chunk]
            try:
                done = (self._journal_postgres(part, found if start == 0 else (), now, request_id)
                        if self.is_postgres
                        else self._journal_sqlite(part, found if start == 0 else (), now, request_id))
            except Exception as exc:
                if not results:
                    raise
                raise JournalInterrupted(results, len(decided)) from exc
            results.extend(done)
            if on_commit is not None:
                on_commit(done)
        return results

    def _journal_postgres(self, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Notice],
                          now: datetime, request_id: str | None = None) -> list[Accepted]:
        """One chunk of `journal` on PostgreSQL. The INSERTs go through the driver's `executemany` in pipeline
        mode: the chunk's rows in a few round trips to the server instead of one each (10,000 alerts: 0.5 s instead
        of 1.5 s on the 2-core machine; a multi-row INSERT through SQLAlchemy took 1.7 s, parsing the long
        statement in the driver), and still one result per row, so a repeat is told apart by its empty result."""
        ts = _ts(now)
        rows = [_journal_row(alert, decision, ts, request_id) for alert, decision in decided]
        with self.transaction() as conn:
            # Shared with every other receipt, exclusive for the stage's horizon read: see `journal_horizon`.
            conn.execute(_JOURNAL_SHARED)
            for notice in found:
                conn.execute(notices.insert().values(
                    source=notice.source, kind=notice.kind, level=notice.level, message=notice.message,
                    details_json=json.dumps(dict(notice.details), default=str), created_at=ts))
            ids: list[int | None] = []
            if rows:
                driver: Any = conn.connection.driver_connection  # psycopg's, in this transaction
                with driver.cursor() as cursor:
                    cursor.executemany(_PG_JOURNAL_INSERT, rows, returning=True)
                    while True:
                        got = cursor.fetchone()
                        ids.append(int(got[0]) if got is not None else None)
                        if not cursor.nextset():
                            break
            if any(alert_id is not None for alert_id in ids):
                conn.execute(sa.select(sa.func.pg_notify(JOURNAL_CHANNEL, "")))
            return _answers(rows, ids, _stored(conn, rows, ids))

    def _journal_sqlite(self, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Notice],
                        now: datetime, request_id: str | None = None) -> list[Accepted]:
        """One chunk of `journal` on SQLite, through the driver: the receipt's hot path is three statements on a
        connection of this thread's own (SQLAlchemy's pool checkout, events and result objects cost more than
        SQLite's insert and commit together). Same rows, same answers; repeats are read back through SQLAlchemy."""
        raw, info = self._thread_connection(), self._thread_connection_info()
        ts = _ts(now)
        rows = [_journal_row(alert, decision, ts, request_id) for alert, decision in decided]
        ids: list[int | None] = []
        deadline = time.monotonic() + self.lock_timeout
        # See bridge.store.writer: queue there, not in SQLite's busy handler, which only waits for what is left
        # of the budget (for writers that do not take the writer lock).
        with self._writer.held(deadline):
            set_busy_timeout(raw, info, busy_milliseconds(deadline - time.monotonic()))
            try:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    for notice in found:
                        raw.execute(_SQLITE_NOTICE_INSERT, {
                            "source": notice.source, "kind": notice.kind, "level": notice.level,
                            "message": notice.message,
                            "details_json": json.dumps(dict(notice.details), default=str), "created_at": ts})
                    for row in rows:
                        found_id = raw.execute(_SQLITE_JOURNAL_INSERT, row).fetchone()
                        ids.append(int(found_id[0]) if found_id is not None else None)
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:  # a failed COMMIT may have ended it already
                        raw.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if is_lock_timeout(exc):
                    raise DatabaseBusy(self.lock_timeout, detail=self._busy_detail()) from exc
                raise
        if all(alert_id is not None for alert_id in ids):
            return _answers(rows, ids, {})
        with self.engine.connect() as conn:
            return _answers(rows, ids, _stored(conn, rows, ids))

    def accepted(self, alert_id: int, *, duplicate: bool = False) -> Accepted:
        """A journal entry as the receipt describes it, with the pipeline's outcome when decided."""
        with self.engine.connect() as conn:
            r = conn.execute(_ACCEPTED.where(alerts.c.id == alert_id)).one()
        return _accepted(r, duplicate=duplicate)

    def journal_horizon(self) -> int:
        """The newest journal id below which every entry is committed or gone: the pipeline decides up to here.

        SQLite commits one writer at a time, in id order. PostgreSQL assigns ids when a receipt inserts but may
        commit receipts out of that order: the stage would decide entry 11 while entry 10 (the same group's
        trigger, say) is still being committed. Every receipt holds a shared advisory lock; taking it exclusively
        waits for the receipts in flight, and any receipt after gets a higher id.
        """
        with self.transaction() as conn:
            if self.is_postgres:
                conn.execute(_JOURNAL_EXCLUSIVE)
            return int(conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar() or 0)

    def set_aside(self, alert_id: int, error: str, now: float) -> bool:
        """Decide a journal entry as `failed`: the pipeline cannot decide it (our bug, or a row it cannot read), and
        it must not hold back every entry after it. Returns False when it was decided meanwhile."""
        with self.transaction(serialized=True) as conn:
            return bool(conn.execute(alerts.update().where(alerts.c.id == alert_id, alerts.c.decided_at.is_(None))
                                     .values(outcome=FAILED, decided_at=now)).rowcount)

    def journal_status(self) -> dict[str, Any]:
        """How far the pipeline is behind: undecided entries, the oldest one's receipt time, the newest id."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sa.func.count(), sa.func.min(alerts.c.journaled_at)).where(
                alerts.c.decided_at.is_(None))).one()
            last = conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar()
        return {"undecided": int(row[0] or 0), "oldest_undecided_at": _iso(row[1]), "last_id": int(last or 0)}

    def oldest_undecided_at(self) -> float | None:
        """The receipt time of the oldest journal entry the pipeline stage has not decided; None when none waits."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(sa.func.min(alerts.c.journaled_at)).where(
                alerts.c.decided_at.is_(None))).scalar()
        return None if value is None else float(value)

    @contextmanager
    def pipeline_batch(self, limit: int) -> Iterator[PipelineBatch]:
        """The next `limit` undecided journal entries, oldest first, in one transaction that the pipeline stage
        fills with its decisions: all of them are committed, or none (a crash redoes the batch).

        Serialized: on PostgreSQL one stage of any replica at a time owns the journal (the writer lock), and
        the follow-ups that resolve incidents wait for it.
        """
        # SQLite commits one writer at a time, in id order: everything committed is below any horizon.
        horizon = self.journal_horizon() if self.is_postgres else None
        with self.transaction(serialized=True) as conn:
            query = _UNDECIDED if horizon is None else _UNDECIDED.where(alerts.c.id <= horizon)
            rows = conn.execute(query.limit(limit)).all()
            yield PipelineBatch(self, conn, rows)

    # -- the pipeline's writes (inside a PipelineBatch) ---------------------------------------------------

    def _apply(self, conn: Connection, entry: JournalEntry, step: Plan, decision: Decision,
               storm: str) -> Applied:
        """Carry out the policy's plan for one entry: the incident, its members, the alert's outcome and the
        timeline. Returns the incident and the dedup key its events use."""
        alert = entry.alert
        ts = entry.journaled_at
        dedup_key = entry.dedup_key
        incident_id = step.target
        dedup_for_jobs = dedup_key
        if step.incident is IncidentStep.CREATE:
            incident_id = _inserted_id(conn.execute(incidents.insert().values(
                dedup_key=dedup_key, status=OPEN, severity=step.severity.name if step.severity else None,
                title=alert.display_title[:2000], source=alert.source, service=alert.service, rule=decision.rule,
                storm_key=storm, opened_at=ts, last_alert_at=ts, alert_count=1,
                categories_json=json.dumps(sorted(decision.categories)),
                dimensions_json=json.dumps(dict(decision.dimensions)),
                tags_json=json.dumps([f"{k}:{v}" if v else k for k, v in alert.tags]),
                details_json=json.dumps(dict(decision.details), default=str),
            )))
            auto_resolve = decision.details.get("auto_resolve_seconds")
            if auto_resolve:
                self._enqueue(conn, JobKind.AUTO_RESOLVE, dedup_key, incident_id, None, {}, ts,
                              ts + float(auto_resolve))
        elif step.incident is IncidentStep.REOPEN and incident_id is not None:
            dedup_for_jobs = self._reopen(conn, incident_id, step, decision, ts)
        elif step.incident is not None and incident_id is not None:
            row = conn.execute(_INCIDENT, {"incident": incident_id}).one()
            values: dict[str, Any] = {"last_alert_at": ts, "alert_count": row.alert_count + 1,
                                      **_merged_impact(row, decision)}
            if step.incident is IncidentStep.UPDATE and step.severity is not None:
                values["severity"] = step.severity.name
            if step.incident is IncidentStep.RESOLVE:
                values["status"] = RESOLVED
                values["resolved_at"] = ts
                conn.execute(members.update().where(members.c.incident_id == incident_id).values(
                    state="resolved", updated_at=ts))
            conn.execute(_UPDATE_INCIDENT, {"incident": incident_id, **values})
            if step.incident is IncidentStep.RESOLVE and step.outcome == "resolved":
                self._after_resolve(conn, row, ts)
            if step.outcome == "storm":
                self._schedule_digest(conn, row.dedup_key, incident_id, ts)
            dedup_for_jobs = row.dedup_key
        if incident_id is not None and step.member is not None:
            self._member(conn, incident_id, dedup_key, "firing" if step.member is MemberStep.JOIN else "resolved",
                         ts)
        decided: dict[str, Any] = {"alert": entry.id, "outcome": step.outcome, "incident_id": incident_id,
                                   "decided_at": time.time(), "action": decision.action.value}
        if decision is not entry.decision:  # a silence changed it: store the decision that was carried out
            decided["decision_json"] = json.dumps(decision.to_dict(), default=str)
        conn.execute(_DECIDE_ALERT, decided)
        if step.supersede_pending and incident_id is not None:
            conn.execute(jobs.update().where(
                jobs.c.dedup_key == dedup_for_jobs, jobs.c.kind == JobKind.EVENT, jobs.c.action == "trigger",
                jobs.c.state == "pending"
            ).values(state="superseded", reason="resolved_first", updated_at=ts,
                     last_error="a resolve for this dedup key arrived before the trigger was delivered"))
        if incident_id is not None and step.timeline:
            conn.execute(timeline.insert(), [{"incident_id": incident_id, "at": ts, "kind": kind, "description": text,
                                              "personnel": "", "actions": ""} for kind, text in step.timeline])
        return Applied(incident_id, dedup_for_jobs)

    def _reopen(self, conn: Connection, incident_id: int, step: Plan, decision: Decision, ts: float) -> str:
        """Open a resolved incident again (the policy's `reopen`); returns its dedup key, which the trigger uses.

        Each reopening is kept in the incident's details (`reopens`: when, the resolution it undid, and the
        PagerDuty incident of that resolution), for the reopen note and the post-mortem. PagerDuty cannot reopen a
        resolved incident: the same dedup key's trigger opens a new one there, so the stored PagerDuty incident is
        forgotten and found again by dedup key once the trigger is delivered. Unless the resolve never left: a
        resolve still queued and never attempted is superseded, PagerDuty's incident stays open, and the trigger
        de-duplicates into it.
        """
        row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).one()
        details = json.loads(row.details_json)
        previous = {"id": row.pd_incident_id, "html_url": row.pd_html_url} if row.pd_incident_id else None
        held_back = conn.execute(jobs.update().where(
            jobs.c.dedup_key == row.dedup_key, jobs.c.kind == JobKind.EVENT, jobs.c.action == "resolve",
            jobs.c.state == "pending", jobs.c.attempts == 0,
        ).values(state="superseded", reason="reopened_first", updated_at=ts,
                 last_error="the incident reopened before its resolve was sent")).rowcount
        details["reopens"] = [*details.get("reopens", []), {
            "at": _iso(ts), "resolved_at": _iso(row.resolved_at), "pagerduty": previous,
            "pagerduty_kept_open": bool(held_back)}]
        values: dict[str, Any] = {
            "status": OPEN, "resolved_at": None, "last_alert_at": ts, "alert_count": row.alert_count + 1,
            **_merged_impact(row, decision), "details_json": json.dumps(details, default=str)}
        if step.severity is not None:
            values["severity"] = step.severity.name
        if not held_back:
            values.update(pd_incident_id=None, pd_html_url=None)
        conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
        if details.get("auto_resolve_seconds"):
            # The source never sends recoveries: the reopened incident needs its own timer again.
            self._enqueue(conn, JobKind.AUTO_RESOLVE, row.dedup_key, incident_id, None, {}, ts,
                          ts + float(details["auto_resolve_seconds"]))
        return str(row.dedup_key)

    def _schedule_digest(self, conn: Connection, dedup_key: str, incident_id: int, now: float) -> None:
        """One pending storm digest per incident: the note summarises every alert attached until it goes out."""
        pending = conn.execute(_PENDING_DIGEST, {"incident": incident_id}).first()
        if pending is None:
            self._enqueue(conn, JobKind.STORM_DIGEST, dedup_key, incident_id, None, {}, now, now + STORM_DIGEST_DELAY)

    def _member(self, conn: Connection, incident_id: int, dedup_key: str, state: str, now: float) -> None:
        updated = conn.execute(_UPDATE_MEMBER, {"incident": incident_id, "key": dedup_key, "state": state,
                                                "updated_at": now}).rowcount
        if not updated:
            conn.execute(members.insert(), {"incident_id": incident_id, "dedup_key": dedup_key, "state": state,
                                            "joined_at": now, "updated_at": now})


def _merged_impact(row: Any, decision: Decision) -> dict[str, str]:
    """An incident's dimension and category columns with a new alert's folded in: the highest value of each
    dimension, the union of categories."""
    dims = json.loads(row.dimensions_json)
    for k, v in decision.dimensions.items():
        dims[k] = max(float(v), float(dims.get(k, v)))
    cats = sorted(set(json.loads(row.categories_json)) | set(decision.categories))
    return {"dimensions_json": json.dumps(dims), "categories_json": json.dumps(cats)}


_JOURNAL_COLUMNS = ("source", "source_event_id", "received_at", "journaled_at", "decided_at", "title", "state",
                    "group_key", "dedup_key", "service", "severity", "action", "rule", "outcome", "incident_id",
                    "alert_json", "decision_json", "raw_json", "request_id")
_SQLITE_JOURNAL_INSERT = (f"INSERT INTO alerts ({', '.join(_JOURNAL_COLUMNS)}) "
                          f"VALUES ({', '.join(':' + c for c in _JOURNAL_COLUMNS)}) "
                          "ON CONFLICT (source, source_event_id) DO NOTHING RETURNING id")
_PG_JOURNAL_INSERT = (f"INSERT INTO alerts ({', '.join(_JOURNAL_COLUMNS)}) "
                      f"VALUES ({', '.join('%(' + c + ')s' for c in _JOURNAL_COLUMNS)}) "
                      "ON CONFLICT (source, source_event_id) DO NOTHING RETURNING id")
_SQLITE_NOTICE_INSERT = ("INSERT INTO notices (source, kind, level, message, details_json, created_at) "
                         "VALUES (:source, :kind, :level, :message, :details_json, :created_at)")
# Event ids per query when repeats are read back (SQLite before 3.32 allows 999 parameters a statement).
_READ_BACK = 500


def _journal_row(alert: Alert, decision: Decision, ts: float, request_id: str | None = None) -> dict[str, Any]:
    """The journal row of a decided alert: undecided (outcome pending), received at `ts` by request `request_id`."""
    group_key = decision.group_key or alert.group_key
    return {
        "source": alert.source, "source_event_id": alert.source_event_id,
        "received_at": _ts(alert.received_at), "journaled_at": ts, "decided_at": None,
        "title": alert.title[:4000], "state": alert.state.value, "group_key": group_key,
        "dedup_key": dedup_key_for(group_key), "service": alert.service,
        "severity": decision.severity.name if decision.severity else None,
        "action": decision.action.value, "rule": decision.rule, "outcome": PENDING, "incident_id": None,
        "alert_json": json.dumps(alert.to_dict(include_raw=False), default=str),
        "decision_json": json.dumps(decision.to_dict(), default=str),
        "raw_json": json.dumps(alert.raw, default=str) if alert.raw is not None else None,
        "request_id": request_id,
    }


@dataclass(frozen=True)
class JournalEntry:
    """One undecided alert of the journal, as the pipeline stage reads it back."""

    id: int
    alert: Alert
    decision: Decision      # the rules engine's, at receipt
    journaled_at: float     # receipt time: the pipeline decides as of it, so a redone batch decides the same
    group_key: str
    dedup_key: str
    request_id: str | None = None  # the receipt's (`bridge.web.requestid`), for the stage's log lines


@dataclass(frozen=True)
class Applied:
    """Where a plan landed: the incident acted on and the dedup key its events go out under."""

    incident_id: int | None
    dedup_key: str


@dataclass(frozen=True)
class InhibitCandidate:
    """An open incident of an inhibiting rule, with the first alert that opened it (for `equal` labels)."""

    incident_id: int
    severity: Severity | None
    rule: str
    first_alert: Alert | None


# What a receipt says of a stored entry (see `Accepted`).
_ACCEPTED = sa.select(alerts.c.id, alerts.c.severity, alerts.c.action, alerts.c.rule, alerts.c.dedup_key,
                      alerts.c.outcome, alerts.c.incident_id)


def _accepted(r: Any, *, duplicate: bool) -> Accepted:
    return Accepted(r.id, r.severity, r.action, r.rule, r.dedup_key, r.outcome, r.incident_id, duplicate)


def _stored(conn: Connection, rows: Sequence[dict[str, Any]],
            ids: Sequence[int | None]) -> dict[tuple[str, str], Accepted]:
    """The stored entries that the rows without a new id (repeats of a (source, event id)) are answered with,
    by (source, event id), read back a few hundred at a time."""
    repeats: dict[str, list[str]] = {}
    for row, alert_id in zip(rows, ids, strict=True):
        if alert_id is None:
            repeats.setdefault(row["source"], []).append(row["source_event_id"])
    stored: dict[tuple[str, str], Accepted] = {}
    for source, event_ids in repeats.items():
        for at in range(0, len(event_ids), _READ_BACK):
            for r in conn.execute(_ACCEPTED.add_columns(alerts.c.source_event_id).where(
                    alerts.c.source == source, alerts.c.source_event_id.in_(event_ids[at:at + _READ_BACK]))):
                stored[(source, r.source_event_id)] = _accepted(r, duplicate=True)
    return stored


def _answers(rows: Sequence[dict[str, Any]], ids: Sequence[int | None],
             stored: dict[tuple[str, str], Accepted]) -> list[Accepted]:
    """The receipt's answer for each journal row: the new entry (pending) where it has an id, else the `stored`
    entry of its (source, event id)."""
    return [Accepted(alert_id, row["severity"], row["action"], row["rule"], row["dedup_key"], PENDING, None)
            if alert_id is not None else stored[(row["source"], row["source_event_id"])]
            for row, alert_id in zip(rows, ids, strict=True)]


_UNDECIDED = (sa.select(alerts.c.id, alerts.c.journaled_at, alerts.c.group_key, alerts.c.dedup_key,
                        alerts.c.alert_json, alerts.c.decision_json, alerts.c.request_id)
              .where(alerts.c.decided_at.is_(None)).order_by(alerts.c.id))

# The pipeline's statements, built once with bound parameters: building SQLAlchemy expressions per alert cost more
# than SQLite running them (a storm is decided at thousands of alerts per batch).
_B = sa.bindparam
_OPEN_OF_GROUP = (sa.select(incidents).join(members, members.c.incident_id == incidents.c.id)
                  .where(members.c.dedup_key == _B("key"), incidents.c.status == OPEN)
                  .order_by(incidents.c.id.desc()).limit(1))
_RESOLVED_OF_GROUP = (sa.select(incidents).join(members, members.c.incident_id == incidents.c.id)
                      .where(members.c.dedup_key == _B("key"), incidents.c.status == RESOLVED,
                             incidents.c.resolved_at >= _B("since"))
                      .order_by(incidents.c.id.desc()).limit(1))
_INCIDENT = sa.select(incidents).where(incidents.c.id == _B("incident"))
_STORM_COUNT = sa.select(sa.func.count()).select_from(incidents).where(
    incidents.c.storm_key == _B("key"), incidents.c.opened_at >= _B("since"))
_STORM_ANCHOR = (sa.select(incidents).where(incidents.c.storm_key == _B("key"), incidents.c.status == OPEN,
                                            incidents.c.opened_at >= _B("since"))
                 .order_by(incidents.c.id).limit(1))
# Executed with the columns to set as further parameters (SET is built from the parameters' names).
_UPDATE_INCIDENT = incidents.update().where(incidents.c.id == _B("incident"))
_DECIDE_ALERT = alerts.update().where(alerts.c.id == _B("alert"))
_UPDATE_MEMBER = members.update().where(members.c.incident_id == _B("incident"), members.c.dedup_key == _B("key"))
_PENDING_DIGEST = sa.select(jobs.c.id).where(jobs.c.incident_id == _B("incident"), jobs.c.kind == JobKind.STORM_DIGEST,
                                             jobs.c.state == "pending").limit(1)


class PipelineBatch:
    """The pipeline stage's view of the store for one batch: the entries, the reads that gather each alert's
    policy context, and the writes that carry out its plan, all on the batch's one connection and transaction.

    It answers questions with rows and carries out plans; it decides nothing (`bridge.pipeline` does).
    """

    def __init__(self, store: JournalStore, conn: Connection, rows: Sequence[Any]) -> None:
        self.store = store
        self.conn = conn
        self._rows = rows
        self.entry_ids = [int(r.id) for r in rows]

    @property
    def oldest(self) -> float | None:
        """The receipt time of the batch's oldest entry (None for an empty batch)."""
        return min((r.journaled_at or 0.0 for r in self._rows), default=None)

    def entries(self) -> Iterator[JournalEntry]:
        """The batch's entries in order, each read back into its Alert and Decision as it is reached (a batch
        cut short by its time budget does not read the rest); raises on a row that cannot be read."""
        for r in self._rows:
            yield JournalEntry(r.id, Alert.from_dict(json.loads(r.alert_json)),
                               Decision.from_dict(json.loads(r.decision_json)), r.journaled_at or 0.0, r.group_key,
                               r.dedup_key, r.request_id)

    def silence_records(self, at: float) -> list[dict[str, Any]]:
        """Stored silences not ended or expired at `at`."""
        rows = self.conn.execute(sa.select(silences).where(
            silences.c.expired_at.is_(None), silences.c.ends_at > at).order_by(silences.c.id)).all()
        return [_silence_json(r) for r in rows]

    def open_incident_of_group(self, dedup_key: str) -> IncidentState | None:
        """The newest open incident the group (dedup key) is a member of."""
        row = self.conn.execute(_OPEN_OF_GROUP, {"key": dedup_key}).first()
        return self.store._state_of(self.conn, row) if row is not None else None

    def recently_resolved(self, dedup_key: str, since: float) -> IncidentState | None:
        """The newest incident of this group resolved at or after `since` (a candidate for reopening)."""
        row = self.conn.execute(_RESOLVED_OF_GROUP, {"key": dedup_key, "since": since}).first()
        return self.store._state_of(self.conn, row) if row is not None else None

    def inhibit_candidates(self, rules: Sequence[str]) -> list[InhibitCandidate]:
        """Open incidents of the named (inhibiting) rules, oldest first, each with its first alert."""
        if not rules:
            return []
        rows = self.conn.execute(sa.select(incidents.c.id, incidents.c.severity, incidents.c.rule).where(
            incidents.c.status == OPEN, incidents.c.rule.in_(list(rules))).order_by(incidents.c.id)).all()
        out = []
        for row in rows:
            first = self.conn.execute(sa.select(alerts.c.alert_json).where(alerts.c.incident_id == row.id)
                                      .order_by(alerts.c.id).limit(1)).first()
            out.append(InhibitCandidate(row.id, Severity.parse(row.severity) if row.severity else None, row.rule,
                                        Alert.from_dict(json.loads(first.alert_json)) if first else None))
        return out

    def state_of(self, incident_id: int) -> IncidentState:
        """The policy's view of one incident."""
        row = self.conn.execute(_INCIDENT, {"incident": incident_id}).one()
        return self.store._state_of(self.conn, row)

    def storm_incidents(self, key: str, since: float) -> tuple[int, IncidentState | None]:
        """How many incidents with this storm key opened since `since`, and the first of them still open."""
        params = {"key": key, "since": since}
        count = int(self.conn.execute(_STORM_COUNT, params).scalar() or 0)
        if not count:
            return 0, None
        anchor = self.conn.execute(_STORM_ANCHOR, params).first()
        return count, (self.store._state_of(self.conn, anchor) if anchor is not None else None)

    def apply(self, entry: JournalEntry, step: Plan, decision: Decision, storm: str) -> Applied:
        """Carry out the plan of one entry (see `Store._apply`)."""
        return self.store._apply(self.conn, entry, step, decision, storm)

    def record_beats(self, entry: JournalEntry, names: Sequence[str]) -> None:
        """Record the entry as a beat of each named heartbeat, as of its receipt."""
        record_beats(self.conn, names, entry.journaled_at, entry.id)

    def enqueue_event(self, entry: JournalEntry, applied: Applied, action: str, payload: dict[str, Any],
                      due: float, priority: int) -> None:
        """Queue an Events API event of the entry's incident in the outbox."""
        self.store._enqueue(self.conn, "event", applied.dedup_key, applied.incident_id, entry.id, payload,
                            entry.journaled_at, due, action=action, priority=priority)
