"""Speakers, word timings, per-job language shares and engine usage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("min_speakers", sa.Integer))
    op.add_column("jobs", sa.Column("speaker_count", sa.Integer))
    op.add_column("jobs", sa.Column("language_shares", postgresql.JSONB))
    op.add_column("jobs", sa.Column("engine", sa.String(32)))
    op.add_column("jobs", sa.Column("billed_seconds", sa.Float))
    op.add_column("jobs", sa.Column("external_operation_id", sa.String(128)))
    # The machine's text, kept when a person edits a segment.
    op.add_column("segments", sa.Column("original_text", sa.Text))

    op.create_table(
        "speakers",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("speaking_seconds", sa.Float, nullable=False),
        sa.Column("segment_count", sa.Integer, nullable=False),
        sa.UniqueConstraint("job_id", "label", name="speakers_job_label_key"),
    )
    op.create_table(
        "words",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("segment_position", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("start_seconds", sa.Float, nullable=False),
        sa.Column("end_seconds", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("speaker", sa.String(32)),
        sa.UniqueConstraint("job_id", "position", name="words_job_position_key"),
    )


def downgrade() -> None:
    op.drop_table("words")
    op.drop_table("speakers")
    op.drop_column("segments", "original_text")
    for column in (
        "external_operation_id",
        "billed_seconds",
        "engine",
        "language_shares",
        "speaker_count",
        "min_speakers",
    ):
        op.drop_column("jobs", column)
