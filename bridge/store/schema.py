"""The database schema: every table and index of the store, the constants its columns hold, and the names every
replica shares in the database (advisory lock ids, the journal's notification channel).

Every table is defined here, on the one `metadata`: a new database is created from it (at the migrations' head), and
tests/unit/store/test_migrations.py checks that the revisions in `bridge.store.migrations` reach exactly it. A change
here needs a revision there (see the `bridge.store` docstring). Times are stored as seconds since the epoch (Float
columns); `_ts`, `_dt` and `_iso` convert them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

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
    # The id of the request that brought the alert (`bridge.web.requestid`): the pipeline's and the delivery
    # worker's log lines of the alert carry it. NULL for alerts journaled before it existed, or not over HTTP.
    sa.Column("request_id", _text(128)),
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
# The storm count: incidents of one rule and monitor opened within the window.
sa.Index("ix_incidents_storm", incidents.c.storm_key, incidents.c.opened_at)
sa.Index("ix_incidents_status_rule", incidents.c.status, incidents.c.rule)

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
    # When the job became due: set at queueing (its due time), kept through the retries of failed attempts, reset
    # when it is deliberately put off (`release_job`) or retried by an operator. The stall watchdog's age of a job
    # is `now - due_since` (`bridge.health`); NULL in rows from before the column (next_attempt_at stands in).
    sa.Column("due_since", sa.Float),
)
sa.Index("ix_jobs_state_due", jobs.c.state, jobs.c.next_attempt_at)
# The lease takes the most urgent due job: pending jobs in (priority, id) order, without sorting a backlog.
sa.Index("ix_jobs_state_priority", jobs.c.state, jobs.c.priority, jobs.c.id)
sa.Index("ix_jobs_dedup", jobs.c.dedup_key, jobs.c.id)
sa.Index("ix_jobs_incident_kind", jobs.c.incident_id, jobs.c.kind)
# The newest job of a kind (`latest_job`: the reconciliation pass), however long ago it ran.
sa.Index("ix_jobs_kind", jobs.c.kind, jobs.c.id)
sa.Index("uq_jobs_dedupe", jobs.c.dedupe, unique=True)

# The pages the bridge sends about itself to BRIDGE_FALLBACK_ROUTING_KEY (`bridge.delivery.watchdog`): one row per
# stalled part (`what`: delivery, pipeline), shared by every process and replica so that each page is triggered
# once and resolved once. `claimed_until`: a process is sending this row's event now (a crash mid-send frees it).
self_pages = sa.Table(
    "self_pages", metadata,
    sa.Column("what", _text(32), primary_key=True),
    sa.Column("state", _text(16), nullable=False),  # open | resolved
    sa.Column("claimed_until", sa.Float),
    sa.Column("claimed_by", _text(255)),
    sa.Column("triggered_at", sa.Float),
    sa.Column("resolved_at", sa.Float),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

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

# Heartbeats (`heartbeats:` in the rules): when the bridge started watching each one (the clock of a heartbeat
# never seen, so a fresh install does not page at once) and its last beat. Kept here, not derived from the alerts
# table: which alerts are beats depends on the heartbeat's conditions, not on any column, and the start of the
# watch is known nowhere else. One row per heartbeat name; a heartbeat removed from the rules loses its row.
heartbeats = sa.Table(
    "heartbeats", metadata,
    sa.Column("name", _text(255), primary_key=True),
    sa.Column("watched_since", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float),
    sa.Column("last_alert_id", sa.Integer),
)

# PostgreSQL: the transactions that read, decide and then write (receipt, resolving an incident, queueing a job)
# hold this transaction-level advisory lock, so they run one at a time, as every write transaction does on SQLite
# (BEGIN IMMEDIATE). Without it two replicas receiving one group at once would both open an incident, and a job
# could commit after a later job of its dedup key, so a worker would send the later one first. Leasing does not
# take it: workers lock rows (FOR UPDATE SKIP LOCKED) and never wait for a receipt.
WRITER_LOCK = 0x6272_6964_6765  # "bridge"

OPEN = "open"
class JobKind(StrEnum):
    """What an outbox job does. `event` goes to the Events API; every other kind is a follow-up
    (`bridge.followups`), dispatched by kind."""

    EVENT = "event"
    INCIDENT_SETUP = "incident_setup"
    ESCALATION_CHECK = "escalation_check"
    RELATED_NOTE = "related_note"
    STORM_DIGEST = "storm_digest"
    AUTO_RESOLVE = "auto_resolve"
    RESOLUTION_NOTE = "resolution_note"
    REOPEN_NOTE = "reopen_note"
    POSTMORTEM = "postmortem"
    RECONCILE = "reconcile"
    MISSED_RESOLVE = "missed_resolve"


ORDERED_KINDS = (JobKind.EVENT, JobKind.INCIDENT_SETUP)
RESOLVED = "resolved"
UNFINISHED = ("pending", "sending")
# Every job state. pending and sending are unfinished; the rest are terminal: delivered, dry_run (printed, not
# sent), dead (dead-lettered: PagerDuty refused it, or our own bug repeated; an operator may retry it),
# superseded (a trigger whose resolve came first) and discarded (an operator decided it is never to be sent).
JOB_STATES = ("pending", "sending", "delivered", "dry_run", "dead", "superseded", "discarded")
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


def wall_clock() -> float:
    """Seconds since the epoch; the one place the store's callers read the clock from."""
    return time.time()
