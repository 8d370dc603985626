"""The store: alerts, their decisions, incidents, the delivery outbox and the timeline, in SQL.

SQLite (WAL) by default; PostgreSQL for several replicas (jobs are leased with `FOR UPDATE SKIP LOCKED`
there). An accepted alert, its decision and its delivery jobs are committed in ONE transaction before the
receiver answers 2xx: a 2xx means nothing can be lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import Connection, Engine

from bridge.errors import ConfigError, Conflict
from bridge.model import Alert, Decision, Notice, Severity, dedup_key_for
from bridge.pipeline.policy import IncidentState, IncidentStep, MemberStep, Plan

log = logging.getLogger(__name__)

metadata = sa.MetaData()


def _text(length: int) -> sa.types.TypeEngine[str]:
    """A string column: VARCHAR(length) in the SQLite schema (which never enforces it), TEXT on PostgreSQL.

    PostgreSQL enforces VARCHAR lengths; a sender's over-long event id or service name would then fail the
    whole receipt (a 500, retried forever) where SQLite stores it. Both databases keep the same values.
    """
    return sa.String(length).with_variant(sa.Text(), "postgresql")


alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", _text(64), nullable=False),
    sa.Column("source_event_id", _text(512), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("state", _text(16), nullable=False),
    sa.Column("group_key", sa.Text, nullable=False),
    sa.Column("dedup_key", _text(255), nullable=False),
    sa.Column("service", _text(255)),
    sa.Column("severity", _text(2)),
    sa.Column("action", _text(16), nullable=False),
    sa.Column("rule", _text(255)),
    sa.Column("outcome", _text(32), nullable=False),
    sa.Column("incident_id", sa.Integer),
    sa.Column("alert_json", sa.Text, nullable=False),
    sa.Column("decision_json", sa.Text, nullable=False),
    sa.Column("raw_json", sa.Text),
    # The journal: the web process appends (outcome "pending", decided_at NULL) and commits before its 2xx; the
    # pipeline stage decides each entry later, as of `journaled_at` (the receipt time), and sets `decided_at`.
    sa.Column("journaled_at", sa.Float),
    sa.Column("decided_at", sa.Float),
    sa.UniqueConstraint("source", "source_event_id", name="uq_alert_source_event"),
)
sa.Index("ix_alerts_dedup", alerts.c.dedup_key)
sa.Index("ix_alerts_received", alerts.c.received_at)
sa.Index("ix_alerts_incident", alerts.c.incident_id)
# The stage's queue: only undecided entries are indexed, so the index stays as small as the backlog.
sa.Index("ix_alerts_undecided", alerts.c.id, sqlite_where=alerts.c.decided_at.is_(None),
         postgresql_where=alerts.c.decided_at.is_(None))

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dedup_key", _text(255), nullable=False),
    sa.Column("status", _text(16), nullable=False),  # open | resolved
    sa.Column("severity", _text(2)),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("source", _text(64), nullable=False),
    sa.Column("service", _text(255)),
    sa.Column("rule", _text(255)),
    sa.Column("storm_key", _text(512)),  # rule + monitor: what an alert storm is counted by
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("last_alert_at", sa.Float, nullable=False),
    sa.Column("last_paged_at", sa.Float),
    sa.Column("alert_count", sa.Integer, nullable=False, default=1),
    sa.Column("categories_json", sa.Text, nullable=False, default="[]"),
    sa.Column("dimensions_json", sa.Text, nullable=False, default="{}"),
    sa.Column("tags_json", sa.Text, nullable=False, default="[]"),
    sa.Column("pd_incident_id", _text(32)),
    sa.Column("pd_html_url", sa.Text),
    sa.Column("details_json", sa.Text, nullable=False, default="{}"),
)
sa.Index("ix_incidents_dedup_status", incidents.c.dedup_key, incidents.c.status)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", _text(32), nullable=False),       # event
    sa.Column("dedup_key", _text(255), nullable=False),
    sa.Column("incident_id", sa.Integer),
    sa.Column("alert_id", sa.Integer),
    sa.Column("action", _text(16), nullable=False),     # trigger | resolve
    sa.Column("priority", sa.Integer, nullable=False, default=5),  # 0 = most severe first
    sa.Column("payload_json", sa.Text, nullable=False),
    # pending | sending | delivered | dry_run | dead | superseded | discarded (see JOB_STATES)
    sa.Column("state", _text(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # Attempts that ended in our own exception (a bug, not PagerDuty's answer) since the job was queued or last
    # retried by an operator: bounded, unlike PagerDuty's retryable failures (see DeliveryWorker).
    sa.Column("internal_failures", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float),
    sa.Column("leased_by", _text(255)),  # "<host>:<pid>" of the worker holding the lease
    sa.Column("last_error", sa.Text),
    sa.Column("reason", _text(32)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float),
    # What makes a follow-up job once-only ("incident_setup:12:P1:0"): a unique column, so a repeat insert does
    # nothing, instead of searching payloads. NULL for jobs that may repeat (events, timers).
    sa.Column("dedupe", _text(255)),
)
sa.Index("ix_jobs_state_due", jobs.c.state, jobs.c.next_attempt_at)
sa.Index("ix_jobs_dedup", jobs.c.dedup_key, jobs.c.id)
sa.Index("ix_jobs_incident_kind", jobs.c.incident_id, jobs.c.kind)
sa.Index("uq_jobs_dedupe", jobs.c.dedupe, unique=True)

timeline = sa.Table(
    "timeline", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident_id", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", _text(32), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("personnel", sa.Text, nullable=False, default=""),
    sa.Column("actions", sa.Text, nullable=False, default=""),
)
sa.Index("ix_timeline_incident", timeline.c.incident_id, timeline.c.at)

notices = sa.Table(
    "notices", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", _text(64), nullable=False),
    sa.Column("kind", _text(64), nullable=False),
    sa.Column("level", _text(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

rulesets = sa.Table(
    "rulesets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hash", _text(64)),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("files_json", sa.Text),
    sa.Column("base_dir", sa.Text),
    sa.Column("loaded_at", sa.Float, nullable=False),
)

members = sa.Table(
    "incident_members", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident_id", sa.Integer, nullable=False),
    sa.Column("dedup_key", _text(255), nullable=False),
    sa.Column("state", _text(16), nullable=False),  # firing | resolved
    sa.Column("joined_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("incident_id", "dedup_key", name="uq_member"),
)
sa.Index("ix_members_dedup", members.c.dedup_key)

# A storm's digest note waits this long, so it summarises the alerts attached meanwhile.
STORM_DIGEST_DELAY = 60.0
# The draft waits a little after the resolution so late acknowledgements and notes make it in.
POSTMORTEM_DELAY = 30.0
# The resolution checklist follows the resolve event to PagerDuty (its handler also waits for a resolve still
# queued), so responders read it, and the final update, on a resolved incident.
RESOLUTION_NOTE_DELAY = 5.0

postmortems = sa.Table(
    "postmortems", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("incident_id", sa.Integer, nullable=False, unique=True),
    sa.Column("markdown", sa.Text, nullable=False),
    sa.Column("drafted_at", sa.Float, nullable=False),
)

silences = sa.Table(
    "silences", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("spec_json", sa.Text, nullable=False),  # the silence as silence_to_json writes it
    sa.Column("owner", _text(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("expired_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Who did what to the bridge's behaviour: silences created or expired, rules reloaded, jobs retried or discarded.
# `actor` names the credential (admin token, loopback without one, the CLI's local user, a signal), never its value.
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", _text(255), nullable=False),
    sa.Column("action", _text(64), nullable=False),   # silence.create | silence.expire | rules.reload | job.retry...
    sa.Column("target", _text(255), nullable=False, default=""),
    sa.Column("details_json", sa.Text, nullable=False, default="{}"),
)
sa.Index("ix_audit_at", audit.c.at)

# PostgreSQL: the transactions that read, decide and then write (receipt, resolving an incident, queueing a job)
# hold this transaction-level advisory lock, so they run one at a time, as every write transaction does on SQLite
# (BEGIN IMMEDIATE). Without it two replicas receiving one group at once would both open an incident, and a job
# could commit after a later job of its dedup key, so a worker would send the later one first. Leasing does not
# take it: workers lock rows (FOR UPDATE SKIP LOCKED) and never wait for a receipt.
WRITER_LOCK = 0x6272_6964_6765  # "bridge"
# How long a PostgreSQL transaction waits for a lock (SQLite: busy_timeout).
LOCK_TIMEOUT = "30s"
# How long opening a PostgreSQL connection may take (libpq's own default is to wait forever on a host that drops
# packets, so a start or a reconnect would hang instead of failing); a URL's own ?connect_timeout= wins.
CONNECT_TIMEOUT_SECONDS = 10

OPEN = "open"
ORDERED_KINDS = ("event", "incident_setup")
RESOLVED = "resolved"
UNFINISHED = ("pending", "sending")
# Every job state. pending and sending are unfinished; the rest are terminal: delivered, dry_run (printed, not
# sent), dead (dead-lettered: PagerDuty refused it, or our own bug repeated; an operator may retry it),
# superseded (a trigger whose resolve came first) and discarded (an operator decided it is never to be sent).
JOB_STATES = ("pending", "sending", "delivered", "dry_run", "dead", "superseded", "discarded")
# Columns added to existing tables after databases were created with them, and the DDL that adds each one to
# such a database at start (there is no migration tool yet; keep these until there is one).
# Journal columns: rows of a database from before the journal were decided at receipt, so they get a decided_at
# (0) and never reach the pipeline; new rows set both explicitly.
ADDED_COLUMNS = {("jobs", "internal_failures"): "INTEGER NOT NULL DEFAULT 0",
                 ("jobs", "dedupe"): "VARCHAR(255)",
                 ("alerts", "journaled_at"): "FLOAT DEFAULT 0",
                 ("alerts", "decided_at"): "FLOAT DEFAULT 0"}
# An alert whose outcome the pipeline stage has not decided yet.
PENDING = "pending"
# An alert the pipeline stage could not decide (logged with the reason); it pages nothing.
FAILED = "failed"
# PostgreSQL: the channel the receipt notifies on commit and the pipeline stage listens to.
JOURNAL_CHANNEL = "bridge_journal"
# PostgreSQL: receipts hold this advisory lock shared; the stage takes it exclusively to read a horizon below which
# every journal entry is committed (see `Store.journal_horizon`).
JOURNAL_LOCK = 0x6A6F_7572_6E61  # "journa"
_JOURNAL_SHARED = sa.select(sa.func.pg_advisory_xact_lock_shared(JOURNAL_LOCK))
_JOURNAL_EXCLUSIVE = sa.select(sa.func.pg_advisory_xact_lock(JOURNAL_LOCK))


def _inserted_id(result: Any) -> int:
    """The primary key of the row an INSERT created."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


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


def create_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign-key enforcement."""
    if url.startswith("sqlite"):
        synchronous = sqlite_synchronous()
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  pool_pre_ping=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The driver's implicit transactions would defer BEGIN until the first write; take the write
            # lock at BEGIN IMMEDIATE instead so two writers never deadlock on a lock upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    parsed = sa.make_url(url)
    if (parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2")
            and "connect_timeout" not in parsed.query):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


SYNCHRONOUS_SETTING = "BRIDGE_SQLITE_SYNCHRONOUS"


def sqlite_synchronous() -> str:
    """SQLite's `synchronous` for the journal: NORMAL (the default) survives the bridge crashing or being killed;
    FULL also survives a power loss or an operating-system crash, at the cost of a sync of the log per commit."""
    value = os.environ.get(SYNCHRONOUS_SETTING, "NORMAL").strip().upper() or "NORMAL"
    if value not in ("NORMAL", "FULL", "EXTRA"):
        raise ConfigError(f"{SYNCHRONOUS_SETTING}={value!r} is not a SQLite synchronous mode",
                          hint="use NORMAL (the default: survives crashes of the bridge) or FULL (also survives "
                               "power loss)")
    return value


def redact_url(url: str) -> str:
    """`url` with its password shown as `***`, for messages and logs; also when SQLAlchemy cannot parse it."""
    try:
        shown = sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads (the very error being reported): mask "user:...@" alike
        # Greedy up to the last "@": a password may itself contain "@" or "/"; hiding too much is the safe side.
        return re.sub(r"(://[^:/@]*):.*@", r"\1:***@", url)
    # SQLAlchemy ends the password at its first "@"; a raw "@" in it would leave the rest shown as the host.
    return re.sub(r"(://[^:/@?#]*):[^/?#]*@", r"\1:***@", shown)


POSTGRES_EXTRA = "pip install 'incident-bridge[postgres]'"
EXAMPLE_URLS = "sqlite:///incident-bridge.db or postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME"


def database_error(url: str, exc: BaseException, setting: str = "BRIDGE_DATABASE_URL") -> ConfigError:
    """Why the database at `url` (from `setting`) cannot be used, as one line naming the setting and the fix.

    The password never appears: the URL is redacted and the driver's message is scrubbed of it.
    """
    shown = f"{setting}={redact_url(url)}"
    try:
        parsed: sa.URL | None = sa.make_url(url)
    except Exception:
        parsed = None
    if parsed is None:
        return ConfigError(f"{shown} is not a database URL", hint=f"set it to a URL like {EXAMPLE_URLS}")
    backend = parsed.get_backend_name()
    if isinstance(exc, sa.exc.NoSuchModuleError):
        if backend == "postgres":
            return ConfigError(f"{shown}: SQLAlchemy does not accept the scheme postgres://",
                               hint=f"write postgresql+psycopg:// instead, with the driver from {POSTGRES_EXTRA}")
        return ConfigError(f"{shown}: {parsed.drivername!r} is not a database SQLAlchemy knows",
                           hint=f"use a URL like {EXAMPLE_URLS}")
    if isinstance(exc, ImportError):
        missing = f"the driver module {exc.name!r}" if exc.name else f"its driver ({_one_line(str(exc))})"
        if backend == "postgresql":
            fix = (f"install it with {POSTGRES_EXTRA}" if parsed.get_driver_name() == "psycopg" else
                   f"use postgresql+psycopg://... with the driver the bridge supports: {POSTGRES_EXTRA}")
        else:
            fix = f"install that driver, or use {EXAMPLE_URLS} ({POSTGRES_EXTRA})"
        return ConfigError(f"{shown} needs {missing}, which is not installed", hint=fix)
    orig = getattr(exc, "orig", None)  # the driver's own exception, whose message says what happened
    detail = _one_line(str(orig if orig is not None else exc))
    if parsed.password:
        detail = detail.replace(parsed.password, "***")
    if backend == "sqlite":
        return ConfigError(f"{shown}: cannot open or create the SQLite database {parsed.database}: {detail}",
                           hint="point it at a file in an existing directory the bridge can write to, e.g. "
                                "sqlite:////var/lib/incident-bridge/incident-bridge.db")
    if isinstance(exc, sa.exc.OperationalError):
        return ConfigError(f"{shown}: cannot connect to the database: {detail}",
                           hint="check that the server runs and accepts connections at that host and port, and "
                                "the user, password and database name")
    return ConfigError(f"{shown}: cannot set up the bridge's tables: {detail}",
                       hint="check that this database user may create tables in that database")


def _one_line(text: str) -> str:
    # Drivers' messages span lines (libpq adds "Is the server running...?"); the first says what happened.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else text.strip()


class Store:
    """All database access of the bridge. One instance per process; thread-safe through the engine's pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._local = threading.local()
        insert: Any = (sa.dialects.postgresql.insert if self.is_postgres else sa.dialects.sqlite.insert)(alerts)
        # Built once: the receipt's one statement. A repeat of (source, event id) inserts nothing and returns no id.
        self._journal_insert = insert.on_conflict_do_nothing(
            index_elements=["source", "source_event_id"]).returning(alerts.c.id)
        job_insert: Any = (sa.dialects.postgresql.insert if self.is_postgres else sa.dialects.sqlite.insert)(jobs)
        self._job_insert_once = job_insert.on_conflict_do_nothing(index_elements=["dedupe"]).returning(jobs.c.id)

    @classmethod
    def open(cls, url: str, *, setting: str = "BRIDGE_DATABASE_URL") -> Store:
        """Open (and create the schema of) the database at `url`.

        Raises ConfigError naming `setting` (where the URL came from) when the URL is malformed, its driver is
        not installed, or the database cannot be reached or created: nothing can start without it, and the
        cause is the setting, so the user gets one line saying how to fix it rather than a driver's traceback.
        """
        try:
            store = cls(create_engine(url))
            store.create_schema()
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            # ValueError: SQLAlchemy's URL parser raises it for a port that is not a number.
            raise database_error(url, exc, setting) from exc
        return store

    def create_schema(self) -> None:
        """Create missing tables (idempotent)."""
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Add the columns of `ADDED_COLUMNS` to a database created before them (create_all adds tables only)."""
        # Serialized: two processes starting at once (web and worker, or replicas) must not both add a column.
        with self.transaction(serialized=True) as conn:
            for (table, column), ddl in ADDED_COLUMNS.items():
                if column not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
                    conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
                    log.warning("database upgraded: added column %s.%s", table, column)
            # create_all makes the indexes of the tables it creates; these came later, on tables that may exist.
            for added in (alerts, jobs):
                for index in added.indexes:
                    index.create(conn, checkfirst=True)

    @contextmanager
    def transaction(self, *, serialized: bool = False) -> Iterator[Connection]:
        """One transaction; commits on success, rolls back on any error.

        `serialized`: on PostgreSQL, wait for the other serialized transactions of every replica first (see
        `WRITER_LOCK`); on SQLite every write transaction already is.
        """
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                if serialized:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(WRITER_LOCK)))
            yield conn

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- the journal: receipt -----------------------------------------------------------------------------

    def journal(self, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Notice],
                now: datetime) -> list[Accepted]:
        """Append alerts and the rules engine's decisions to the journal and commit: what a 2xx promises.

        One INSERT per alert and no read before it: a repeat of an accepted (source, source_event_id) is absorbed
        by the unique constraint (insert ... on conflict do nothing) and answered with the stored entry, whose
        outcome is the pipeline's by then or still "pending". New entries are "pending": the pipeline stage
        decides their outcome (incident, page) after the answer. PostgreSQL: the pipeline stage is notified on
        commit; on SQLite the caller rings the stage's doorbell (`bridge.pipeline.wake`).
        """
        if not self.is_postgres and not found:
            return self._journal_sqlite(decided, now)
        ts = _ts(now)
        results: list[Accepted] = []
        with self.transaction() as conn:
            if self.is_postgres:
                # Shared with every other receipt, exclusive for the stage's horizon read: see `journal_horizon`.
                conn.execute(_JOURNAL_SHARED)
            for notice in found:
                conn.execute(notices.insert().values(
                    source=notice.source, kind=notice.kind, level=notice.level, message=notice.message,
                    details_json=json.dumps(dict(notice.details), default=str), created_at=ts))
            for alert, decision in decided:
                row = _journal_row(alert, decision, ts)
                inserted = conn.execute(self._journal_insert, row).first()
                if inserted is not None:
                    results.append(Accepted(int(inserted[0]), row["severity"], row["action"], row["rule"],
                                            row["dedup_key"], PENDING, None))
                    continue
                stored = conn.execute(sa.select(
                    alerts.c.id, alerts.c.severity, alerts.c.action, alerts.c.rule, alerts.c.dedup_key,
                    alerts.c.outcome, alerts.c.incident_id).where(
                    alerts.c.source == alert.source, alerts.c.source_event_id == alert.source_event_id)).one()
                results.append(Accepted(stored.id, stored.severity, stored.action, stored.rule, stored.dedup_key,
                                        stored.outcome, stored.incident_id, duplicate=True))
            if self.is_postgres and any(not r.duplicate for r in results):
                conn.execute(sa.select(sa.func.pg_notify(JOURNAL_CHANNEL, "")))
        return results

    def _journal_sqlite(self, decided: Sequence[tuple[Alert, Decision]], now: datetime) -> list[Accepted]:
        """`journal` on SQLite, through the driver: the receipt's hot path is three statements on a connection of
        this thread's own (SQLAlchemy's pool checkout, events and result objects cost more than SQLite's insert and
        commit together). Same rows, same answers; repeats are read back through SQLAlchemy."""
        raw = self._thread_connection()
        ts = _ts(now)
        rows = [_journal_row(alert, decision, ts) for alert, decision in decided]
        ids: list[int | None] = []
        raw.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                found = raw.execute(_SQLITE_JOURNAL_INSERT, row).fetchone()
                ids.append(int(found[0]) if found is not None else None)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        results = []
        for row, alert_id in zip(rows, ids, strict=True):
            if alert_id is not None:
                results.append(Accepted(alert_id, row["severity"], row["action"], row["rule"], row["dedup_key"],
                                        PENDING, None))
            else:
                results.append(self._stored(row["source"], row["source_event_id"]))
        return results

    def _thread_connection(self) -> Any:
        """This thread's own SQLite driver connection (with the engine's pragmas), kept for the thread's life."""
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self._local.raw = self.engine.raw_connection()  # never returned to the pool
        return raw.driver_connection

    def _stored(self, source: str, event_id: str) -> Accepted:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(alerts.c.id, alerts.c.severity, alerts.c.action, alerts.c.rule,
                                       alerts.c.dedup_key, alerts.c.outcome, alerts.c.incident_id)
                             .where(alerts.c.source == source, alerts.c.source_event_id == event_id)).one()
        return Accepted(r.id, r.severity, r.action, r.rule, r.dedup_key, r.outcome, r.incident_id, duplicate=True)

    def accepted(self, alert_id: int, *, duplicate: bool = False) -> Accepted:
        """A journal entry as the receipt describes it, with the pipeline's outcome when decided."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(alerts.c.id, alerts.c.severity, alerts.c.action, alerts.c.rule,
                                       alerts.c.dedup_key, alerts.c.outcome, alerts.c.incident_id)
                             .where(alerts.c.id == alert_id)).one()
        return Accepted(r.id, r.severity, r.action, r.rule, r.dedup_key, r.outcome, r.incident_id, duplicate)

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

    @contextmanager
    def pipeline_batch(self, limit: int) -> Iterator[PipelineBatch]:
        """The next `limit` undecided journal entries, oldest first, in one transaction that the pipeline stage
        fills with its decisions: all of them are committed, or none (a crash redoes the batch).

        Serialized: on PostgreSQL one stage of any replica at a time owns the journal (the writer lock), and
        the follow-ups that resolve incidents wait for it.
        """
        horizon = self.journal_horizon()
        with self.transaction(serialized=True) as conn:
            rows = conn.execute(sa.select(
                alerts.c.id, alerts.c.journaled_at, alerts.c.group_key, alerts.c.dedup_key, alerts.c.alert_json,
                alerts.c.decision_json).where(alerts.c.decided_at.is_(None), alerts.c.id <= horizon)
                .order_by(alerts.c.id).limit(limit)).all()
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
                title=alert.title[:2000], source=alert.source, service=alert.service, rule=decision.rule,
                storm_key=storm, opened_at=ts, last_alert_at=ts, alert_count=1,
                categories_json=json.dumps(sorted(decision.categories)),
                dimensions_json=json.dumps(dict(decision.dimensions)),
                tags_json=json.dumps([f"{k}:{v}" if v else k for k, v in alert.tags]),
                details_json=json.dumps(dict(decision.details), default=str),
            )))
            auto_resolve = decision.details.get("auto_resolve_seconds")
            if auto_resolve:
                self._enqueue(conn, "auto_resolve", dedup_key, incident_id, None, {}, ts, ts + float(auto_resolve))
        elif step.incident is IncidentStep.REOPEN and incident_id is not None:
            dedup_for_jobs = self._reopen(conn, incident_id, step, decision, ts)
        elif step.incident is not None and incident_id is not None:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).one()
            values: dict[str, Any] = {"last_alert_at": ts, "alert_count": row.alert_count + 1,
                                      **_merged_impact(row, decision)}
            if step.incident is IncidentStep.UPDATE and step.severity is not None:
                values["severity"] = step.severity.name
            if step.incident is IncidentStep.RESOLVE:
                values["status"] = RESOLVED
                values["resolved_at"] = ts
                conn.execute(members.update().where(members.c.incident_id == incident_id).values(
                    state="resolved", updated_at=ts))
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
            if step.incident is IncidentStep.RESOLVE and step.outcome == "resolved":
                self._after_resolve(conn, row, ts)
            if step.outcome == "storm":
                self._schedule_digest(conn, row.dedup_key, incident_id, ts)
            dedup_for_jobs = row.dedup_key
        if incident_id is not None and step.member is not None:
            self._member(conn, incident_id, dedup_key, "firing" if step.member is MemberStep.JOIN else "resolved",
                         ts)
        conn.execute(alerts.update().where(alerts.c.id == entry.id).values(
            outcome=step.outcome, incident_id=incident_id, decided_at=time.time(),
            action=decision.action.value, decision_json=json.dumps(decision.to_dict(), default=str)))
        if step.supersede_pending and incident_id is not None:
            conn.execute(jobs.update().where(
                jobs.c.dedup_key == dedup_for_jobs, jobs.c.kind == "event", jobs.c.action == "trigger",
                jobs.c.state == "pending"
            ).values(state="superseded", reason="resolved_first", updated_at=ts,
                     last_error="a resolve for this dedup key arrived before the trigger was delivered"))
        if incident_id is not None:
            for kind, text in step.timeline:
                conn.execute(timeline.insert().values(incident_id=incident_id, at=ts, kind=kind,
                                                      description=text, personnel="", actions=""))
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
            jobs.c.dedup_key == row.dedup_key, jobs.c.kind == "event", jobs.c.action == "resolve",
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
            self._enqueue(conn, "auto_resolve", row.dedup_key, incident_id, None, {}, ts,
                          ts + float(details["auto_resolve_seconds"]))
        return str(row.dedup_key)

    def _enqueue(self, conn: Connection, kind: str, dedup_key: str, incident_id: int | None,
                 alert_id: int | None, payload: Any, now: float, due: float, *, action: str = "",
                 priority: int = 5, dedupe: str | None = None) -> int:
        """Insert one job; with `dedupe`, nothing when a job with that key exists (returns 0 then)."""
        values = dict(kind=kind, dedup_key=dedup_key, incident_id=incident_id, alert_id=alert_id,
                      action=action or kind, priority=priority, payload_json=json.dumps(payload, default=str),
                      state="pending", attempts=0, next_attempt_at=due, created_at=now, updated_at=now,
                      dedupe=dedupe[:255] if dedupe else None)
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

    def _schedule_digest(self, conn: Connection, dedup_key: str, incident_id: int, now: float) -> None:
        """One pending storm digest per incident: the note summarises every alert attached until it goes out."""
        pending = conn.execute(sa.select(jobs.c.id).where(
            jobs.c.incident_id == incident_id, jobs.c.kind == "storm_digest", jobs.c.state == "pending")).first()
        if pending is None:
            self._enqueue(conn, "storm_digest", dedup_key, incident_id, None, {}, now, now + STORM_DIGEST_DELAY)

    def _member(self, conn: Connection, incident_id: int, dedup_key: str, state: str, now: float) -> None:
        updated = conn.execute(members.update().where(
            members.c.incident_id == incident_id, members.c.dedup_key == dedup_key).values(
            state=state, updated_at=now)).rowcount
        if not updated:
            conn.execute(members.insert().values(incident_id=incident_id, dedup_key=dedup_key, state=state,
                                                 joined_at=now, updated_at=now))

    def _state_of(self, conn: Connection, row: Any) -> IncidentState:
        triggers = sa.select(jobs.c.state, jobs.c.attempts).where(
            jobs.c.incident_id == row.id, jobs.c.kind == "event", jobs.c.action == "trigger")
        if self.is_postgres:
            # The plan depends on whether a trigger was attempted: lock the triggers so no worker of another
            # replica leases one between this read and the plan's writes (a trigger leased while being
            # superseded would page for an incident we then consider resolved). A lease in progress is waited
            # for, and then seen as sending.
            triggers = triggers.with_for_update()
        trig = conn.execute(triggers).all()
        attempted = any(s in ("delivered", "dry_run", "sending", "dead") or a > 0 for s, a in trig)
        pending = sum(1 for s, a in trig if s == "pending" and a == 0)
        firing = int(conn.execute(sa.select(sa.func.count()).select_from(members).where(
            members.c.incident_id == row.id, members.c.state == "firing")).scalar() or 0)
        return IncidentState(row.id, Severity.parse(row.severity) if row.severity else None,
                             _dt(row.opened_at) or datetime.now(UTC), _dt(row.last_paged_at),
                             attempted, pending, firing_members=max(firing, 1), dedup_key=row.dedup_key,
                             resolved_at=_dt(row.resolved_at))

    # -- delivery outbox ----------------------------------------------------------------------------------

    def lease_job(self, now: float, lease_seconds: float = 60.0, owner: str = "",
                  exclude_kinds: Sequence[str] = ()) -> dict[str, Any] | None:
        """Take the next due job, most severe first, never overtaking an earlier job of the same dedup key.

        A job whose lease expired (its worker died mid-send) is due again.
        """
        earlier = jobs.alias("earlier")
        # Events of one dedup key leave in order (and so do incident set-ups); timers such as escalation
        # checks wait for their time without holding anything back. Only unfinished jobs hold later ones back:
        # a dead, superseded or discarded job never goes out by itself, so it must not block its key forever
        # (an operator's retry_job makes a dead job pending again, and it then goes before the later ones).
        blocked = sa.exists().where(
            earlier.c.dedup_key == jobs.c.dedup_key, earlier.c.id < jobs.c.id, earlier.c.kind == jobs.c.kind,
            jobs.c.kind.in_(ORDERED_KINDS),
            sa.or_(earlier.c.state == "pending",
                   sa.and_(earlier.c.state == "sending", earlier.c.lease_until > now)))
        due = sa.or_(sa.and_(jobs.c.state == "pending", jobs.c.next_attempt_at <= now),
                     sa.and_(jobs.c.state == "sending", jobs.c.lease_until <= now))
        query = sa.select(jobs).where(due, ~blocked)
        if exclude_kinds:
            query = query.where(jobs.c.kind.not_in(list(exclude_kinds)))
        query = query.order_by(jobs.c.priority, jobs.c.id).limit(1)
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
            if row.incident_id is not None and row.kind == "event":
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
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "sending").values(
                state="pending", next_attempt_at=retry_at, lease_until=None, updated_at=now))

    def events_sent_since(self, since: float) -> int:
        """How many events were delivered after `since` (for the per-routing-key rate limit)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.kind == "event", jobs.c.state == "delivered", jobs.c.delivered_at > since)).scalar() or 0)

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
                state="pending", next_attempt_at=now, lease_until=None, leased_by=None, internal_failures=0,
                updated_at=now))
            if actor:
                self._audit(conn, now, actor, "job.retry", str(job_id), _job_audit(row))
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
            return _job_json(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one())

    def _job_for_update(self, conn: Connection, job_id: int) -> Any:
        """The job's row, locked on PostgreSQL until the transaction ends (a worker's lease waits, or skips it)."""
        query = sa.select(jobs).where(jobs.c.id == job_id)
        if self.is_postgres:
            query = query.with_for_update()
        return conn.execute(query).first()

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
            return int(_inserted_id(conn.execute(rulesets.insert().values(
                hash=hash_, ok=ok, error=error, files_json=json.dumps(files) if files is not None else None,
                base_dir=base_dir, loaded_at=now))))

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

    def incidents_with_first_alert(self, limit: int = 20000) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Incidents, newest first, each with its first alert (one query; for related-incident lookups)."""
        first = (sa.select(alerts.c.incident_id, sa.func.min(alerts.c.id).label("first_id"))
                 .where(alerts.c.incident_id.is_not(None)).group_by(alerts.c.incident_id).subquery())
        q = (sa.select(incidents, alerts.c.alert_json)
             .select_from(incidents.outerjoin(first, first.c.incident_id == incidents.c.id)
                          .outerjoin(alerts, alerts.c.id == first.c.first_id))
             .order_by(incidents.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(_incident_json(r), {"alert": json.loads(r.alert_json)} if r.alert_json else None) for r in rows]

    def incident_row(self, incident_id: int) -> dict[str, Any] | None:
        """One incident as JSON, by id."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
        return _incident_json(row) if row is not None else None

    def set_pagerduty_incident(self, incident_id: int, pd_id: str, html_url: str | None) -> None:
        """Remember which PagerDuty incident ours is."""
        with self.transaction() as conn:
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                pd_incident_id=pd_id, pd_html_url=html_url))

    def merge_incident_details(self, incident_id: int, **values: Any) -> None:
        """Add keys to an incident's details (related incidents found, roles requested...)."""
        with self.transaction(serialized=True) as conn:
            row = conn.execute(sa.select(incidents.c.details_json).where(incidents.c.id == incident_id)).one()
            details = json.loads(row.details_json)
            details.update(values)
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                details_json=json.dumps(details, default=str)))

    def resolve_incident(self, incident_id: int, now: float, reason: str, *, send_resolve: bool) -> bool:
        """Resolve an open incident on our own (auto-resolve, or a human resolved it in PagerDuty).

        With `send_resolve`, a resolve event is queued when a trigger was ever attempted. Returns False when
        the incident was not open.
        """
        with self.transaction(serialized=True) as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
            if row is None or row.status != OPEN:
                return False
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(
                status=RESOLVED, resolved_at=now))
            conn.execute(members.update().where(members.c.incident_id == incident_id).values(
                state="resolved", updated_at=now))
            state = self._state_of(conn, row)
            conn.execute(jobs.update().where(
                jobs.c.dedup_key == row.dedup_key, jobs.c.kind == "event", jobs.c.action == "trigger",
                jobs.c.state == "pending").values(state="superseded", reason="resolved_first", updated_at=now))
            if send_resolve and state.any_trigger_attempted:
                self._enqueue(conn, "event", row.dedup_key, incident_id, None,
                              {"event_action": "resolve", "dedup_key": row.dedup_key}, now, now, action="resolve",
                              priority=0)
            conn.execute(timeline.insert().values(incident_id=incident_id, at=now, kind="resolution",
                                                  description=reason, personnel="incident-bridge", actions=""))
            self._after_resolve(conn, row, now)
        return True

    def _after_resolve(self, conn: Connection, row: Any, now: float) -> None:
        """Queue the follow-ups of a resolution, in the transaction that records it (the worker decides whether
        each is needed): the resolution checklist note, right after the resolve, and the post-mortem draft, a
        little later.

        An incident can resolve more than once (it reopens when the resolution did not hold): each resolution gets
        its own checklist note (`resolution` counts them), and the draft is made again unless one is still queued.
        """
        done = int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.incident_id == row.id, jobs.c.kind == "resolution_note")).scalar() or 0)
        self._enqueue(conn, "resolution_note", row.dedup_key, row.id, None, {"resolution": done + 1}, now,
                      now + RESOLUTION_NOTE_DELAY)
        queued = conn.execute(sa.select(jobs.c.id).where(jobs.c.incident_id == row.id, jobs.c.kind == "postmortem",
                                                         jobs.c.state.in_(UNFINISHED))).first()
        if queued is None:
            self._enqueue(conn, "postmortem", row.dedup_key, row.id, None, {}, now, now + POSTMORTEM_DELAY)

    def save_postmortem(self, incident_id: int, markdown: str, now: float) -> None:
        """Store (or replace) an incident's post-mortem draft."""
        with self.transaction() as conn:
            updated = conn.execute(postmortems.update().where(postmortems.c.incident_id == incident_id).values(
                markdown=markdown, drafted_at=now)).rowcount
            if not updated:
                conn.execute(postmortems.insert().values(incident_id=incident_id, markdown=markdown,
                                                         drafted_at=now))

    def get_postmortem(self, incident_id: int) -> str | None:
        """The stored draft, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(postmortems.c.markdown).where(
                postmortems.c.incident_id == incident_id)).first()
        return row.markdown if row else None

    def recent_incidents(self, since: float) -> list[dict[str, Any]]:
        """Incidents opened since `since` (reconciliation, related lookup)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(incidents).where(incidents.c.opened_at >= since)
                                .order_by(incidents.c.id)).all()
        return [_incident_json(r) for r in rows]

    def incident_alerts(self, incident_id: int) -> list[dict[str, Any]]:
        """The alerts of an incident, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(alerts).where(alerts.c.incident_id == incident_id)
                                .order_by(alerts.c.id)).all()
        return [_alert_json(r) for r in rows]

    def triggers_delivered(self, incident_id: int) -> bool:
        """Whether a trigger of this incident reached PagerDuty."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(jobs.c.id).where(
                jobs.c.incident_id == incident_id, jobs.c.kind == "event", jobs.c.action == "trigger",
                jobs.c.state == "delivered").limit(1)).first() is not None

    def event_unfinished(self, incident_id: int, action: str) -> bool:
        """Whether an event of this incident with `action` (trigger | resolve) is still queued or being sent."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(jobs.c.id).where(
                jobs.c.incident_id == incident_id, jobs.c.kind == "event", jobs.c.action == action,
                jobs.c.state.in_(UNFINISHED)).limit(1)).first() is not None

    def last_event_action(self, incident_id: int) -> str | None:
        """The action of the newest delivered event of this incident."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs.c.action).where(
                jobs.c.incident_id == incident_id, jobs.c.kind == "event", jobs.c.state == "delivered")
                .order_by(jobs.c.delivered_at.desc()).limit(1)).first()
        return row.action if row else None

    # -- silences -----------------------------------------------------------------------------------------

    def add_silence(self, spec: dict[str, Any], owner: str, reason: str, ends_at: float, now: float,
                    *, actor: str = "") -> int:
        """Store a silence; returns its id. With `actor`, the audit entry is written in the same transaction."""
        with self.transaction() as conn:
            silence_id = int(_inserted_id(conn.execute(silences.insert().values(
                spec_json=json.dumps(spec, default=str), owner=owner, reason=reason, ends_at=ends_at,
                created_at=now))))
            if actor:
                self._audit(conn, now, actor, "silence.create", str(silence_id),
                            {"owner": owner, "reason": reason, "ends_at": _iso(ends_at),
                             "matchers": spec.get("matchers")})
            return silence_id

    def update_silence_spec(self, silence_id: int, spec: dict[str, Any]) -> None:
        """Rewrite a stored silence's spec (to record its id inside it)."""
        with self.transaction() as conn:
            conn.execute(silences.update().where(silences.c.id == silence_id).values(
                spec_json=json.dumps(spec, default=str)))

    def list_silences(self, include_expired: bool = False, now: float | None = None) -> list[dict[str, Any]]:
        """Stored silences (by default those not yet ended or expired)."""
        q = sa.select(silences).order_by(silences.c.id)
        if not include_expired:
            at = now if now is not None else time.time()
            q = q.where(silences.c.expired_at.is_(None), silences.c.ends_at > at)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [_silence_json(r) for r in rows]

    def expire_silence(self, silence_id: int, now: float, *, actor: str = "") -> bool:
        """End a silence now; False when there is no such active silence. With `actor`, audited in the same
        transaction."""
        with self.transaction() as conn:
            ended = bool(conn.execute(silences.update().where(
                silences.c.id == silence_id, silences.c.expired_at.is_(None)).values(expired_at=now)).rowcount)
            if ended and actor:
                self._audit(conn, now, actor, "silence.expire", str(silence_id), {})
            return ended

    # -- audit ----------------------------------------------------------------------------------------------

    def _audit(self, conn: Connection, now: float, actor: str, action: str, target: str,
               details: dict[str, Any]) -> None:
        conn.execute(audit.insert().values(at=now, actor=actor[:255], action=action, target=target[:255],
                                           details_json=json.dumps(details, default=str)))
        # The log line carries the same facts; control characters in them are escaped by the log formatter.
        log.info("audit: %s %s %s by %s", action, target, json.dumps(details, default=str), actor)

    def record_audit(self, actor: str, action: str, target: str, details: dict[str, Any], now: float) -> None:
        """Store and log one audit entry (who did what, when)."""
        with self.transaction() as conn:
            self._audit(conn, now, actor, action, target, details)

    def list_audit(self, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        """Audit entries, newest first; `action` filters by exact action or by prefix ending in '.'."""
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if action:
            q = q.where(audit.c.action.startswith(action) if action.endswith(".") else audit.c.action == action)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [{"id": r.id, "at": _iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
                 "details": json.loads(r.details_json)} for r in rows]

    def list_notices(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded notices (SNS subscriptions to confirm, unsubscribes), newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(notices).order_by(notices.c.id.desc()).limit(limit)).all()
        return [{"id": r.id, "source": r.source, "kind": r.kind, "level": r.level, "message": r.message,
                 "details": json.loads(r.details_json), "created_at": _iso(r.created_at)} for r in rows]


def _silence_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "spec": json.loads(r.spec_json), "owner": r.owner, "reason": r.reason,
            "ends_at": r.ends_at, "expired_at": r.expired_at, "created_at": r.created_at}


def _alert_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "source": r.source, "source_event_id": r.source_event_id,
            "received_at": _iso(r.received_at), "title": r.title, "state": r.state, "dedup_key": r.dedup_key,
            "group_key": r.group_key, "service": r.service, "severity": r.severity, "action": r.action,
            "rule": r.rule, "outcome": r.outcome, "incident_id": r.incident_id,
            "decided_at": _iso(r.decided_at) if r.decided_at else None,
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


def _merged_impact(row: Any, decision: Decision) -> dict[str, str]:
    """An incident's dimension and category columns with a new alert's folded in: the highest value of each
    dimension, the union of categories."""
    dims = json.loads(row.dimensions_json)
    for k, v in decision.dimensions.items():
        dims[k] = max(float(v), float(dims.get(k, v)))
    cats = sorted(set(json.loads(row.categories_json)) | set(decision.categories))
    return {"dimensions_json": json.dumps(dims), "categories_json": json.dumps(cats)}


def wall_clock() -> float:
    """Seconds since the epoch; the one place the store's callers read the clock from."""
    return time.time()


_JOURNAL_COLUMNS = ("source", "source_event_id", "received_at", "journaled_at", "decided_at", "title", "state",
                    "group_key", "dedup_key", "service", "severity", "action", "rule", "outcome", "incident_id",
                    "alert_json", "decision_json", "raw_json")
_SQLITE_JOURNAL_INSERT = (f"INSERT INTO alerts ({', '.join(_JOURNAL_COLUMNS)}) "
                          f"VALUES ({', '.join(':' + c for c in _JOURNAL_COLUMNS)}) "
                          "ON CONFLICT (source, source_event_id) DO NOTHING RETURNING id")


def _journal_row(alert: Alert, decision: Decision, ts: float) -> dict[str, Any]:
    """The journal row of a decided alert: undecided (outcome pending) and received at `ts`."""
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


class PipelineBatch:
    """The pipeline stage's view of the store for one batch: the entries, the reads that gather each alert's
    policy context, and the writes that carry out its plan, all on the batch's one connection and transaction.

    It answers questions with rows and carries out plans; it decides nothing (`bridge.pipeline` does).
    """

    def __init__(self, store: Store, conn: Connection, rows: Sequence[Any]) -> None:
        self.store = store
        self.conn = conn
        self._rows = rows
        self.entry_ids = [int(r.id) for r in rows]

    @property
    def entries(self) -> list[JournalEntry]:
        """The batch's entries, read back into Alerts and Decisions (raises on a row that cannot be read)."""
        return [JournalEntry(r.id, Alert.from_dict(json.loads(r.alert_json)),
                             Decision.from_dict(json.loads(r.decision_json)), r.journaled_at or 0.0, r.group_key,
                             r.dedup_key) for r in self._rows]

    def silence_records(self, at: float) -> list[dict[str, Any]]:
        """Stored silences not ended or expired at `at`."""
        rows = self.conn.execute(sa.select(silences).where(
            silences.c.expired_at.is_(None), silences.c.ends_at > at).order_by(silences.c.id)).all()
        return [_silence_json(r) for r in rows]

    def open_incident_of_group(self, dedup_key: str) -> IncidentState | None:
        """The newest open incident the group (dedup key) is a member of."""
        row = self.conn.execute(
            sa.select(incidents).join(members, members.c.incident_id == incidents.c.id)
            .where(members.c.dedup_key == dedup_key, incidents.c.status == OPEN)
            .order_by(incidents.c.id.desc()).limit(1)).first()
        return self.store._state_of(self.conn, row) if row is not None else None

    def recently_resolved(self, dedup_key: str, since: float) -> IncidentState | None:
        """The newest incident of this group resolved at or after `since` (a candidate for reopening)."""
        row = self.conn.execute(
            sa.select(incidents).join(members, members.c.incident_id == incidents.c.id)
            .where(members.c.dedup_key == dedup_key, incidents.c.status == RESOLVED,
                   incidents.c.resolved_at >= since)
            .order_by(incidents.c.id.desc()).limit(1)).first()
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
        row = self.conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).one()
        return self.store._state_of(self.conn, row)

    def storm_incidents(self, key: str, since: float) -> tuple[int, IncidentState | None]:
        """How many incidents with this storm key opened since `since`, and the first of them still open."""
        count = int(self.conn.execute(sa.select(sa.func.count()).select_from(incidents).where(
            incidents.c.storm_key == key, incidents.c.opened_at >= since)).scalar() or 0)
        if not count:
            return 0, None
        anchor = self.conn.execute(sa.select(incidents).where(
            incidents.c.storm_key == key, incidents.c.status == OPEN,
            incidents.c.opened_at >= since).order_by(incidents.c.id).limit(1)).first()
        return count, (self.store._state_of(self.conn, anchor) if anchor is not None else None)

    def apply(self, entry: JournalEntry, step: Plan, decision: Decision, storm: str) -> Applied:
        """Carry out the plan of one entry (see `Store._apply`)."""
        return self.store._apply(self.conn, entry, step, decision, storm)

    def enqueue_event(self, entry: JournalEntry, applied: Applied, action: str, payload: dict[str, Any],
                      due: float, priority: int) -> None:
        """Queue an Events API event of the entry's incident in the outbox."""
        self.store._enqueue(self.conn, "event", applied.dedup_key, applied.incident_id, entry.id, payload,
                            entry.journaled_at, due, action=action, priority=priority)
