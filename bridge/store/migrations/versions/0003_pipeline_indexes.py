"""Indexes added after the journal: the storm count and inhibiting rules (commit 091c0fd), the most urgent pending
job (87e9caa) and the newest job of a kind (97425ee).

Bridges of that time created them at start; this revision creates those a database lacks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (name, table, columns)
INDEXES = [("ix_incidents_storm", "incidents", ["storm_key", "opened_at"]),
           ("ix_incidents_status_rule", "incidents", ["status", "rule"]),
           ("ix_jobs_state_priority", "jobs", ["state", "priority", "id"]),
           ("ix_jobs_kind", "jobs", ["kind", "id"])]


def upgrade() -> None:
    """Create the indexes a database lacks."""
    inspector = sa.inspect(op.get_bind())
    for name, table, columns in INDEXES:
        if name not in {i["name"] for i in inspector.get_indexes(table)}:
            op.create_index(name, table, columns)


def downgrade() -> None:
    """Drop them."""
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
