"""outbox: work for the workers, written in the transaction that asks for it

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(length=100), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_claimed_until", "outbox", ["claimed_until"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_claimed_until", table_name="outbox")
    op.drop_table("outbox")
