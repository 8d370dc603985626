"""Heartbeats (`heartbeats:` in the rules): when the bridge started watching each one and its last beat, so a silent
source is paged about once, across restarts and replicas (issue 14).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the `heartbeats` table."""
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(255).with_variant(sa.Text(), "postgresql"), primary_key=True),
        sa.Column("watched_since", sa.Float, nullable=False),
        sa.Column("last_seen_at", sa.Float),
        sa.Column("last_alert_id", sa.Integer),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("heartbeats")
