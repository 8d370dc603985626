"""The request id an alert was received with (`X-Request-Id`, or one made at receipt), so the pipeline stage's and
the delivery worker's log lines of the same alert carry it (BRIDGE_LOG_FORMAT=json, issue 14).

Alerts received before this revision have none (NULL).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `alerts.request_id`."""
    op.add_column("alerts", sa.Column("request_id", sa.String(128).with_variant(sa.Text(), "postgresql")))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("request_id")
