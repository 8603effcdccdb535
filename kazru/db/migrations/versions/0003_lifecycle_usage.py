"""Upload idempotency keys, the enqueue outbox marker, usage counted once, and daily usage figures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A retried upload with the same key returns the same job (per owner).
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(128)))
    op.create_unique_constraint("jobs_owner_idempotency_key", "jobs", ["owner_id", "idempotency_key"])
    # JetStream sequence of the job's JobUploaded message; NULL while the message is not yet
    # confirmed published (the outbox relay republishes such PENDING jobs).
    op.add_column("jobs", sa.Column("queue_sequence", sa.BigInteger))
    op.add_column("jobs", sa.Column("usage_counted", sa.Boolean, nullable=False, server_default=sa.false()))
    # The relay's scan for PENDING jobs and the janitor's look at running ones.
    op.create_index("ix_jobs_state", "jobs", ["state"])

    # Usage per day (of upload), with no content and nothing that names an owner: survives expiry.
    op.create_table(
        "usage_stats",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("files", sa.Integer, nullable=False, server_default="0"),
        sa.Column("audio_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("succeeded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cancelled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("engine_billed_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("estimated_cost", sa.Float, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("usage_stats")
    op.drop_index("ix_jobs_state", "jobs")
    op.drop_column("jobs", "usage_counted")
    op.drop_column("jobs", "queue_sequence")
    op.drop_constraint("jobs_owner_idempotency_key", "jobs")
    op.drop_column("jobs", "idempotency_key")
