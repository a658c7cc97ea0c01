"""uploads

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:05:13.572472
"""

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sidecar", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("multipart_id", sa.String(length=255), nullable=True),
        sa.Column("part_size", sa.BigInteger(), nullable=False),
        sa.Column("clip_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uploads_clip_id"), ["clip_id"], unique=False)
        batch_op.create_index(
            "ix_uploads_device_sha_state", ["device_id", "sha256", "state"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_uploads_state"), ["state"], unique=False)

    # The primary key (ref, idx) already serves custody look-ups; this index only cost writes.
    op.drop_index("ix_ledger_refs_ref_idx", table_name="ledger_refs")


def downgrade() -> None:
    op.create_index("ix_ledger_refs_ref_idx", "ledger_refs", ["ref", "idx"], unique=False)
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uploads_state"))
        batch_op.drop_index("ix_uploads_device_sha_state")
        batch_op.drop_index(batch_op.f("ix_uploads_clip_id"))

    op.drop_table("uploads")
