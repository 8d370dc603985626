"""The baseline: the tables the bridge created before the journal redesign (commit b069dcd^).

A database made by a bridge of that time has these tables and no alembic_version; `bridge.store.migrations`
recognises it and stamps it at this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from bridge.store.migrations import baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the baseline tables and indexes (the frozen copy in `baseline`, never today's schema)."""
    baseline.metadata.create_all(op.get_bind())


def downgrade() -> None:
    """Drop every baseline table."""
    baseline.metadata.drop_all(op.get_bind())
