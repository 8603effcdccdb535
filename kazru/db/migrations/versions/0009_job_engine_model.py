"""The model that transcribed a job ("whisper-base", "gigaam-multilingual-ctc", "speechkit/general") beside
its engine, so the API, the page and the exports can say which one wrote the transcript.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("engine_model", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "engine_model")
