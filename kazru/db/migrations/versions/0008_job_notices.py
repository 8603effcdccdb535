"""Job notices: what the reader of a finished job should know about its transcript (no speech found, speech
in a language not chosen for it), as a JSON list of {code, message, language}.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("notices", postgresql.JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "notices")
