"""retention, legal holds, the disposal queue and the scrubber's state

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retain_until", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("locked_until", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("retention_rule", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("disposed_at", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("integrity", sa.String(length=16), nullable=False, server_default="unchecked")
        )
        batch_op.add_column(sa.Column("integrity_checked_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("integrity_error", sa.Text(), nullable=True))
        batch_op.create_index("ix_clips_retain_until", ["retain_until"], unique=False)
    op.create_table(
        "holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("clip_id", sa.String(length=36), nullable=True),
        sa.Column("case_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("placed_by", sa.String(length=36), nullable=False),
        sa.Column("placed_at", UTCDateTime(), nullable=False),
        sa.Column("released_by", sa.String(length=36), nullable=True),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("release_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.ForeignKeyConstraint(
            ["placed_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["released_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_holds_clip_id", "holds", ["clip_id"], unique=False)
    op.create_index("ix_holds_case_id", "holds", ["case_id"], unique=False)
    op.create_table(
        "disposals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("clip_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("rule", sa.String(length=120), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("disposed_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_disposals_clip_id", "disposals", ["clip_id"], unique=False)
    op.create_index("ix_disposals_state", "disposals", ["state"], unique=False)
    op.create_table(
        "scrub_cursor",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=1024), nullable=False),
        sa.Column("pass_started_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("scrub_cursor")
    op.drop_index("ix_disposals_state", table_name="disposals")
    op.drop_index("ix_disposals_clip_id", table_name="disposals")
    op.drop_table("disposals")
    op.drop_index("ix_holds_case_id", table_name="holds")
    op.drop_index("ix_holds_clip_id", table_name="holds")
    op.drop_table("holds")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index("ix_clips_retain_until")
        for c in (
            "integrity_error",
            "integrity_checked_at",
            "integrity",
            "disposed_at",
            "retention_rule",
            "locked_until",
            "retain_until",
        ):
            batch_op.drop_column(c)
