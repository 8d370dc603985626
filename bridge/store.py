"""The store: alerts, their decisions, incidents, the delivery outbox and the timeline, in SQL.

SQLite (WAL) by default; PostgreSQL for several replicas (jobs are leased with `FOR UPDATE SKIP LOCKED`
there). An accepted alert, its decision and its delivery jobs are committed in ONE transaction before the
receiver answers 2xx: a 2xx means nothing can be lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bridge.model import Alert, Decision, Notice, Severity, dedup_key_for
from bridge.policy import IncidentState, Plan, plan

log = logging.getLogger(__name__)

metadata = sa.MetaData()

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("source_event_id", sa.String(512), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("dedup_key", sa.String(255), nullable=False),
    sa.Column("service", sa.String(255)),
    sa.Column("severity", sa.String(2)),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("rule", sa.String(255)),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("incident_id", sa.Integer),
    sa.Column("alert_json", sa.Text, nullable=False),
    sa.Column("decision_json", sa.Text, nullable=False),
    sa.Column("raw_json", sa.Text),
    sa.UniqueConstraint("source", "source_event_id", name="uq_alert_source_event"),
)
sa.Index("ix_alerts_dedup", alerts.c.dedup_key)
sa.Index("ix_alerts_received", alerts.c.received_at)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dedup_key", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    sa.Column("severity", sa.String(2)),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("service", sa.String(255)),
    sa.Column("rule", sa.String(255)),
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("last_alert_at", sa.Float, nullable=False),
    sa.Column("last_paged_at", sa.Float),
    sa.Column("alert_count", sa.Integer, nullable=False, default=1),
    sa.Column("categories_json", sa.Text, nullable=False, default="[]"),
    sa.Column("dimensions_json", sa.Text, nullable=False, default="{}"),
    sa.Column("tags_json", sa.Text, nullable=False, default="[]"),
    sa.Column("pd_incident_id", sa.String(32)),
    sa.Column("pd_html_url", sa.Text),
    sa.Column("details_json", sa.Text, nullable=False, default="{}"),
)
sa.Index("ix_incidents_dedup_status", incidents.c.dedup_key, incidents.c.status)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),       # event
    sa.Column("dedup_key", sa.String(255), nullable=False),
    sa.Column("incident_id", sa.Integer),
    sa.Column("alert_id", sa.Integer),
    sa.Column("action", sa.String(16), nullable=False),     # trigger | resolve
    sa.Column("priority", sa.Integer, nullable=False, default=5),  # 0 = most severe first
    sa.Column("payload_json", sa.Text, nullable=False),
    # pending | sending | delivered | dry_run | dead | superseded
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float),
    sa.Column("leased_by", sa.String(255)),  # "<host>:<pid>" of the worker holding the lease
    sa.Column("last_error", sa.Text),
    sa.Column("reason", sa.String(32)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float),
)
sa.Index("ix_jobs_state_due", jobs.c.state, jobs.c.next_attempt_at)
sa.Index("ix_jobs_dedup", jobs.c.dedup_key, jobs.c.id)

timeline = sa.Table(
    "timeline", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident_id", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("personnel", sa.Text, nullable=False, default=""),
    sa.Column("actions", sa.Text, nullable=False, default=""),
)
sa.Index("ix_timeline_incident", timeline.c.incident_id, timeline.c.at)

notices = sa.Table(
    "notices", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

rulesets = sa.Table(
    "rulesets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hash", sa.String(64)),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("files_json", sa.Text),
    sa.Column("base_dir", sa.Text),
    sa.Column("loaded_at", sa.Float, nullable=False),
)

OPEN = "open"
RESOLVED = "resolved"
UNFINISHED = ("pending", "sending")


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def _iso(ts: float | None) -> str | None:
    d = _dt(ts)
    return d.isoformat() if d else None


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
        out: dict[str, Any] = {"id": self.alert_id, "severity": self.severity, "action": self.action,
                               "rule": self.rule, "dedup_key": self.dedup_key, "outcome": self.outcome,
                               "incident_id": self.incident_id}
        if self.duplicate:
            out["duplicate"] = True
        return out


def create_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign-key enforcement."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  pool_pre_ping=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The driver's implicit transactions would defer BEGIN until the first write; take the write
            # lock at BEGIN IMMEDIATE instead so two writers never deadlock on a lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Store:
    """All database access of the bridge. One instance per process; thread-safe through the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (and create the schema of) the database at `url`."""
        store = cls(create_engine(url))
        store.create_schema()
        return store

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        metadata.create_all(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on any error."""
        with self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- receipt ------------------------------------------------------------------------------------------

    def accept(self, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Notice], now: datetime,
               event_builder: Any) -> list[Accepted]:
        """Store alerts with their decisions, carry out the policy's plan, and enqueue delivery jobs.

        All in one transaction: either everything is committed or nothing is. A repeat of an accepted
        (source, source_event_id) returns the original result and changes nothing.
        """
        results: list[Accepted] = []
        with self.transaction() as conn:
            for notice in found:
                conn.execute(notices.insert().values(
                    source=notice.source, kind=notice.kind, level=notice.level, message=notice.message,
                    details_json=json.dumps(dict(notice.details), default=str), created_at=_ts(now)))
            for alert, decision in decided:
                results.append(self._accept_one(conn, alert, decision, now, event_builder))
        return results

    def _accept_one(self, conn: Connection, alert: Alert, decision: Decision, now: datetime,
                    event_builder: Any) -> Accepted:
        existing = conn.execute(sa.select(alerts).where(
            alerts.c.source == alert.source, alerts.c.source_event_id == alert.source_event_id)).first()
        if existing is not None:
            return Accepted(existing.id, existing.severity, existing.action, existing.rule, existing.dedup_key,
                            existing.outcome, existing.incident_id, duplicate=True)
        group_key = decision.group_key or alert.group_key
        dedup_key = dedup_key_for(group_key)
        state = self._incident_state(conn, dedup_key)
        step: Plan = plan(alert, decision, state, now)
        incident_id = state.id if state else None
        ts = _ts(now)

        if step.incident == "create":
            incident_id = conn.execute(incidents.insert().values(
                dedup_key=dedup_key, status=OPEN, severity=step.severity.name if step.severity else None,
                title=alert.title[:2000], source=alert.source, service=alert.service, rule=decision.rule,
                opened_at=ts, last_alert_at=ts, alert_count=1,
                categories_json=json.dumps(sorted(decision.categories)),
                dimensions_json=json.dumps(dict(decision.dimensions)),
                tags_json=json.dumps([f"{k}:{v}" if v else k for k, v in alert.tags]),
                details_json=json.dumps(dict(decision.details), default=str),
            )).inserted_primary_key[0]
        elif step.incident in ("update", "attach", "resolve") and state is not None:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == state.id)).one()
            dims = json.loads(row.dimensions_json)
            for k, v in decision.dimensions.items():
                dims[k] = max(float(v), float(dims.get(k, v)))
            cats = sorted(set(json.loads(row.categories_json)) | set(decision.categories))
            values: dict[str, Any] = {"last_alert_at": ts, "alert_count": row.alert_count + 1,
                                      "dimensions_json": json.dumps(dims), "categories_json": json.dumps(cats)}
            if step.incident == "update" and step.severity is not None:
                values["severity"] = step.severity.name
            if step.incident == "resolve":
                values["status"] = RESOLVED
                values["resolved_at"] = ts
            conn.execute(incidents.update().where(incidents.c.id == state.id).values(**values))

        outcome = step.outcome
        alert_id = conn.execute(alerts.insert().values(
            source=alert.source, source_event_id=alert.source_event_id, received_at=_ts(alert.received_at),
            title=alert.title[:4000], state=alert.state.value, group_key=group_key, dedup_key=dedup_key,
            service=alert.service, severity=decision.severity.name if decision.severity else None,
            action=decision.action.value, rule=decision.rule, outcome=outcome, incident_id=incident_id,
            alert_json=json.dumps(alert.to_dict(include_raw=False), default=str),
            decision_json=json.dumps(decision.to_dict(), default=str),
            raw_json=json.dumps(alert.raw, default=str) if alert.raw is not None else None,
        )).inserted_primary_key[0]

        if step.supersede_pending:
            conn.execute(jobs.update().where(
                jobs.c.dedup_key == dedup_key, jobs.c.action == "trigger", jobs.c.state == "pending"
            ).values(state="superseded", reason="resolved_first", updated_at=ts,
                     last_error="a resolve for this dedup key arrived before the trigger was delivered"))
        if step.event is not None:
            severity = step.severity or decision.severity
            payload = event_builder(step.event, alert, decision, dedup_key, incident_id)
            not_before = _ts(step.not_before) if step.not_before else ts
            conn.execute(jobs.insert().values(
                kind="event", dedup_key=dedup_key, incident_id=incident_id, alert_id=alert_id,
                action=step.event, priority=severity.rank if severity else 4,
                payload_json=json.dumps(payload, default=str), state="pending", attempts=0,
                next_attempt_at=not_before, created_at=ts, updated_at=ts))
        if incident_id is not None:
            for kind, text in step.timeline:
                conn.execute(timeline.insert().values(incident_id=incident_id, at=ts, kind=kind,
                                                      description=text, personnel="", actions=""))
        return Accepted(alert_id, decision.severity.name if decision.severity else None, decision.action.value,
                        decision.rule, dedup_key, outcome, incident_id)

    def _incident_state(self, conn: Connection, dedup_key: str) -> IncidentState | None:
        row = conn.execute(sa.select(incidents).where(
            incidents.c.dedup_key == dedup_key, incidents.c.status == OPEN).order_by(incidents.c.id.desc())).first()
        if row is None:
            return None
        trig = conn.execute(sa.select(jobs.c.state, jobs.c.attempts).where(
            jobs.c.incident_id == row.id, jobs.c.action == "trigger")).all()
        attempted = any(s in ("delivered", "dry_run", "sending", "dead") or a > 0 for s, a in trig)
        pending = sum(1 for s, a in trig if s == "pending" and a == 0)
        return IncidentState(row.id, Severity.parse(row.severity) if row.severity else None,
                             _dt(row.opened_at) or datetime.now(timezone.utc), _dt(row.last_paged_at),
                             attempted, pending)

    # -- delivery outbox ----------------------------------------------------------------------------------

    def lease_job(self, now: float, lease_seconds: float = 60.0, owner: str = "") -> dict[str, Any] | None:
        """Take the next due job, most severe first, never overtaking an earlier job of the same dedup key.

        A job whose lease expired (its worker died mid-send) is due again.
        """
        earlier = jobs.alias("earlier")
        blocked = sa.exists().where(
            earlier.c.dedup_key == jobs.c.dedup_key, earlier.c.id < jobs.c.id,
            sa.or_(earlier.c.state == "pending",
                   sa.and_(earlier.c.state == "sending", earlier.c.lease_until > now)))
        due = sa.or_(sa.and_(jobs.c.state == "pending", jobs.c.next_attempt_at <= now),
                     sa.and_(jobs.c.state == "sending", jobs.c.lease_until <= now))
        query = (sa.select(jobs).where(due, ~blocked).order_by(jobs.c.priority, jobs.c.id).limit(1))
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        with self.transaction() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            conn.execute(jobs.update().where(jobs.c.id == row.id).values(
                state="sending", lease_until=now + lease_seconds, leased_by=owner, updated_at=now))
            out = dict(row._mapping)
            out["payload"] = json.loads(row.payload_json)
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

    def next_due_at(self) -> float | None:
        """When the earliest pending job is due (None when nothing is pending)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(jobs.c.next_attempt_at)).where(
                jobs.c.state == "pending")).scalar()

    def job_delivered(self, job_id: int, now: float, *, dry_run: bool, response: dict[str, Any] | None) -> None:
        """Mark a job delivered and note it on the incident's timeline."""
        with self.transaction() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one()
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(
                state="dry_run" if dry_run else "delivered", delivered_at=now, updated_at=now,
                attempts=row.attempts + 1, lease_until=None, last_error=None))
            if row.incident_id is not None:
                if row.action == "trigger":
                    conn.execute(incidents.update().where(incidents.c.id == row.incident_id).values(
                        last_paged_at=now))
                payload = json.loads(row.payload_json)
                sev = (payload.get("payload") or {}).get("severity", "")
                what = "page" if row.action == "trigger" else "resolution"
                text = (f"{'[dry-run] ' if dry_run else ''}PagerDuty {row.action} sent"
                        + (f" (severity {sev})" if sev else "") + f", dedup key {row.dedup_key}")
                conn.execute(timeline.insert().values(incident_id=row.incident_id, at=now, kind=what,
                                                      description=text, personnel="incident-bridge",
                                                      actions=f"Events API {row.action}"))

    def job_failed(self, job_id: int, now: float, *, error: str, reason: str, retry_at: float | None) -> None:
        """Record a failed attempt: back to pending at `retry_at`, or dead (dead-letter) when None."""
        with self.transaction() as conn:
            row = conn.execute(sa.select(jobs.c.attempts).where(jobs.c.id == job_id)).one()
            values: dict[str, Any] = {"attempts": row.attempts + 1, "last_error": error[:2000], "reason": reason,
                                      "updated_at": now, "lease_until": None}
            if retry_at is None:
                values["state"] = "dead"
            else:
                values["state"] = "pending"
                values["next_attempt_at"] = retry_at
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def release_job(self, job_id: int, now: float, retry_at: float) -> None:
        """Give a leased job back without counting an attempt (rate limit reached, shutting down)."""
        with self.transaction() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "sending").values(
                state="pending", next_attempt_at=retry_at, lease_until=None, updated_at=now))

    def events_sent_since(self, since: float) -> int:
        """How many events were delivered after `since` (for the per-routing-key rate limit)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.state == "delivered", jobs.c.delivered_at > since)).scalar() or 0)

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

    # -- reading ------------------------------------------------------------------------------------------

    def list_alerts(self, limit: int = 100, incident_id: int | None = None) -> list[dict[str, Any]]:
        """Stored alerts with their decisions, newest first."""
        q = sa.select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if incident_id is not None:
            q = q.where(alerts.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [_alert_json(r) for r in conn.execute(q)]

    def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        """One stored alert with its decision and raw payload."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            return None
        out = _alert_json(row)
        out["raw"] = json.loads(row.raw_json) if row.raw_json else None
        return out

    def iter_alert_history(self, limit: int | None = None) -> Iterable[tuple[Alert, dict[str, Any]]]:
        """Stored alerts in arrival order as (Alert, stored decision) for replays."""
        q = sa.select(alerts).order_by(alerts.c.id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                data = json.loads(row.alert_json)
                data["raw"] = json.loads(row.raw_json) if row.raw_json else None
                yield Alert.from_dict(data), json.loads(row.decision_json)

    def list_incidents(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Incidents, newest first."""
        q = sa.select(incidents).order_by(incidents.c.id.desc()).limit(limit)
        if status:
            q = q.where(incidents.c.status == status)
        with self.engine.connect() as conn:
            return [_incident_json(r) for r in conn.execute(q)]

    def find_incident(self, key: str) -> dict[str, Any] | None:
        """An incident by numeric id, dedup key (the newest) or PagerDuty incident id."""
        with self.engine.connect() as conn:
            q = sa.select(incidents).order_by(incidents.c.id.desc())
            row = None
            if key.isdigit():
                row = conn.execute(q.where(incidents.c.id == int(key))).first()
            if row is None:
                row = conn.execute(q.where(incidents.c.dedup_key == key)).first()
            if row is None:
                row = conn.execute(q.where(incidents.c.pd_incident_id == key)).first()
        return _incident_json(row) if row is not None else None

    def incident_timeline(self, incident_id: int) -> list[dict[str, Any]]:
        """The incident's timeline, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(timeline).where(timeline.c.incident_id == incident_id)
                                .order_by(timeline.c.at, timeline.c.id)).all()
        return [{"at": _iso(r.at), "kind": r.kind, "description": r.description, "personnel": r.personnel,
                 "actions": r.actions} for r in rows]

    def add_timeline(self, incident_id: int, now: float, kind: str, description: str, personnel: str = "",
                     actions: str = "") -> None:
        """Append one timeline entry."""
        with self.transaction() as conn:
            conn.execute(timeline.insert().values(incident_id=incident_id, at=now, kind=kind,
                                                  description=description, personnel=personnel,
                                                  actions=actions))

    def record_ruleset(self, *, ok: bool, now: float, hash_: str | None = None, error: str | None = None,
                       files: list[tuple[str, str]] | None = None, base_dir: str = "") -> int:
        """Record a (re)load attempt; a successful one carries the exact files every process then adopts."""
        with self.transaction() as conn:
            return int(conn.execute(rulesets.insert().values(
                hash=hash_, ok=ok, error=error, files_json=json.dumps(files) if files is not None else None,
                base_dir=base_dir, loaded_at=now)).inserted_primary_key[0])

    def latest_ruleset(self) -> dict[str, Any] | None:
        """The newest successfully loaded ruleset snapshot."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rulesets).where(rulesets.c.ok.is_(True))
                               .order_by(rulesets.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return {"id": row.id, "hash": row.hash, "files": [tuple(f) for f in json.loads(row.files_json)],
                "base_dir": row.base_dir, "loaded_at": row.loaded_at}

    def latest_ruleset_id(self) -> int:
        """Id of the newest successful ruleset snapshot (0 when none)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(rulesets.c.id)).where(
                rulesets.c.ok.is_(True))).scalar() or 0)

    def reload_status(self) -> dict[str, Any]:
        """The last reload attempt and the last success, for metrics and the API."""
        with self.engine.connect() as conn:
            last = conn.execute(sa.select(rulesets).order_by(rulesets.c.id.desc()).limit(1)).first()
            ok = conn.execute(sa.select(rulesets).where(rulesets.c.ok.is_(True))
                              .order_by(rulesets.c.id.desc()).limit(1)).first()
        return {
            "last_reload_ok": bool(last.ok) if last else None,
            "last_reload_at": last.loaded_at if last else None,
            "last_error": last.error if last and not last.ok else None,
            "last_success_at": ok.loaded_at if ok else None,
            "hash": ok.hash if ok else None,
        }

    def list_notices(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded notices (SNS subscriptions to confirm, unsubscribes), newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(notices).order_by(notices.c.id.desc()).limit(limit)).all()
        return [{"id": r.id, "source": r.source, "kind": r.kind, "level": r.level, "message": r.message,
                 "details": json.loads(r.details_json), "created_at": _iso(r.created_at)} for r in rows]


def _alert_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "source": r.source, "source_event_id": r.source_event_id,
            "received_at": _iso(r.received_at), "title": r.title, "state": r.state, "dedup_key": r.dedup_key,
            "group_key": r.group_key, "service": r.service, "severity": r.severity, "action": r.action,
            "rule": r.rule, "outcome": r.outcome, "incident_id": r.incident_id,
            "alert": json.loads(r.alert_json), "decision": json.loads(r.decision_json)}


def _incident_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "dedup_key": r.dedup_key, "status": r.status, "severity": r.severity, "title": r.title,
            "source": r.source, "service": r.service, "rule": r.rule, "opened_at": _iso(r.opened_at),
            "resolved_at": _iso(r.resolved_at), "last_alert_at": _iso(r.last_alert_at),
            "last_paged_at": _iso(r.last_paged_at), "alert_count": r.alert_count,
            "categories": json.loads(r.categories_json), "dimensions": json.loads(r.dimensions_json),
            "tags": json.loads(r.tags_json), "pagerduty": {"id": r.pd_incident_id, "html_url": r.pd_html_url},
            "details": json.loads(r.details_json)}


def _job_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "kind": r.kind, "dedup_key": r.dedup_key, "incident_id": r.incident_id,
            "alert_id": r.alert_id, "action": r.action, "state": r.state, "attempts": r.attempts,
            "next_attempt_at": _iso(r.next_attempt_at), "last_error": r.last_error, "reason": r.reason,
            "created_at": _iso(r.created_at), "delivered_at": _iso(r.delivered_at),
            "payload": json.loads(r.payload_json)}


def wall_clock() -> float:
    """Seconds since the epoch; the one place the store's callers read the clock from."""
    return time.time()
