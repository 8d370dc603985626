"""The journal redesign (commit b069dcd): alerts are journaled at receipt and decided later; follow-up jobs are
once-only by a unique `dedupe` key; indexes for the stage's queue and the incident's jobs.

Bridges between that commit and the migrations added these columns (and later the indexes) themselves at start
(`ADDED_COLUMNS`), some only in part: this revision adds only what a database lacks, so it upgrades any of them.
Alerts stored before the journal were decided at receipt: they get that time as `journaled_at` and `decided_at`, so
the pipeline stage never takes them for undecided entries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _text(length: int) -> sa.types.TypeEngine[str]:
    # As bridge.store.schema._text at this revision: TEXT on PostgreSQL, which enforces VARCHAR lengths.
    return sa.String(length).with_variant(sa.Text(), "postgresql")


COLUMNS = [("alerts", sa.Column("journaled_at", sa.Float)),
           ("alerts", sa.Column("decided_at", sa.Float)),
           ("jobs", sa.Column("dedupe", _text(255)))]
# (name, table, columns, unique, WHERE of a partial index)
INDEXES = [("ix_alerts_incident", "alerts", ["incident_id"], False, None),
           ("ix_alerts_undecided", "alerts", ["id"], False, "decided_at IS NULL"),
           ("ix_jobs_incident_kind", "jobs", ["incident_id", "kind"], False, None),
           ("uq_jobs_dedupe", "jobs", ["dedupe"], True, None)]


def upgrade() -> None:
    """Add the journal's columns (backfilling the alerts decided at receipt), `jobs.dedupe` and the indexes."""
    inspector = sa.inspect(op.get_bind())
    for table, column in COLUMNS:
        if column.name not in {c["name"] for c in inspector.get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.add_column(column)
    alerts = sa.table("alerts", sa.column("received_at", sa.Float), sa.column("journaled_at", sa.Float),
                      sa.column("decided_at", sa.Float))
    op.execute(alerts.update().where(alerts.c.journaled_at.is_(None))
               .values(journaled_at=alerts.c.received_at, decided_at=alerts.c.received_at))
    for name, table, columns, unique, where in INDEXES:
        if name not in {i["name"] for i in inspector.get_indexes(table)}:
            partial: dict[str, Any] = ({} if where is None else
                                       {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)})
            op.create_index(name, table, columns, unique=unique, **partial)


def downgrade() -> None:
    """Drop the indexes and columns (the journal's times of decided alerts are lost; undecided ones too)."""
    for name, table, _columns, _unique, _where in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column.name)
