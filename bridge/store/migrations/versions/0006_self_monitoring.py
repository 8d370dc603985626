"""Self-monitoring (issue 14): `jobs.due_since`, when a job first became due (the stall watchdog's age of a job,
kept through retries), and the `self_pages` table, the pages the bridge sends about itself to
BRIDGE_FALLBACK_ROUTING_KEY, shared by every process and replica so that each is triggered and resolved once.

Jobs queued before this revision have no `due_since` (NULL): `next_attempt_at` stands in for it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _text(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.Text(), "postgresql")


def upgrade() -> None:
    """Add `jobs.due_since`; create `self_pages`."""
    op.add_column("jobs", sa.Column("due_since", sa.Float))
    op.create_table(
        "self_pages",
        sa.Column("what", _text(32), primary_key=True),
        sa.Column("state", _text(16), nullable=False),
        sa.Column("claimed_until", sa.Float),
        sa.Column("claimed_by", _text(255)),
        sa.Column("triggered_at", sa.Float),
        sa.Column("resolved_at", sa.Float),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("self_pages")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("due_since")
