"""Result reuse: the hash of an upload's bytes, the earlier job a reused transcript was copied from, and
when a person last edited a transcript (an edited one is not reused: the copy is the machine's result).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("content_sha256", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("reused_from", UUID(as_uuid=True), nullable=True))
    op.add_column("jobs", sa.Column("transcript_edited_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_owner_content", "jobs", ["owner_id", "content_sha256"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_content", "jobs")
    op.drop_column("jobs", "transcript_edited_at")
    op.drop_column("jobs", "reused_from")
    op.drop_column("jobs", "content_sha256")
