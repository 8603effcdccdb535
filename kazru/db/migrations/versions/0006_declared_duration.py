"""A job's duration is what decodes; what the header claimed is kept when the file is truncated.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("declared_duration_seconds", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "declared_duration_seconds")
