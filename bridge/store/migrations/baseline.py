"""The schema of revision 0001 (the baseline), frozen: the tables as the bridge created them before the journal
redesign (commit b069dcd^, where they lived in bridge/store.py), copied verbatim.

Never edit it: revision 0001 creates these tables on a fresh database, and `bridge.store.migrations` brings a
database older than the baseline up to it (the tables it lacks) before stamping it. Today's tables are
`bridge.store.schema`; the revisions after 0001 describe every change since.
"""

from __future__ import annotations

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
    sa.UniqueConstraint("source", "source_event_id", name="uq_alert_source_event"),
)
sa.Index("ix_alerts_dedup", alerts.c.dedup_key)
sa.Index("ix_alerts_received", alerts.c.received_at)

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
)
sa.Index("ix_jobs_state_due", jobs.c.state, jobs.c.next_attempt_at)
sa.Index("ix_jobs_dedup", jobs.c.dedup_key, jobs.c.id)

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
