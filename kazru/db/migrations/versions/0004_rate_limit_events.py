"""Rate limits shared by every gateway replica: one row per accepted event inside its window.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    # A check counts one key's recent events; the janitor drops old ones by time.
    op.create_index("ix_rate_limit_events_key_at", "rate_limit_events", ["key_hash", "at"])
    op.create_index("ix_rate_limit_events_at", "rate_limit_events", ["at"])


def downgrade() -> None:
    op.drop_table("rate_limit_events")
