"""disclosure: organisations, shares with a person or an organisation, for a purpose and on a
legal basis, of the whole case or chosen exhibits, some as redacted copies only

Shares made before this revision were CPS shares of whole cases: they keep their recipient
and scope, and are marked as made before purposes were recorded.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BEFORE = "not recorded: shared before disclosure records (0016)"


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("organisation_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_users_organisation_id", ["organisation_id"], unique=False)
        batch.create_foreign_key(
            "fk_users_organisation_id_organisations", "organisations", ["organisation_id"], ["id"]
        )
    with op.batch_alter_table("shares") as batch:
        batch.add_column(sa.Column("organisation_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("purpose", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("legal_basis", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("whole_case", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("watermark", sa.Boolean(), nullable=True))
        batch.create_index("ix_shares_organisation_id", ["organisation_id"], unique=False)
        batch.create_foreign_key(
            "fk_shares_organisation_id_organisations", "organisations", ["organisation_id"], ["id"]
        )
    shares = sa.table(
        "shares",
        sa.column("purpose", sa.String),
        sa.column("legal_basis", sa.String),
        sa.column("whole_case", sa.Boolean),
        sa.column("watermark", sa.Boolean),
    )
    op.execute(
        shares.update().values(purpose=BEFORE, legal_basis=BEFORE, whole_case=True, watermark=False)
    )
    with op.batch_alter_table("shares") as batch:
        batch.alter_column("user_id", existing_type=sa.String(length=36), nullable=True)
        batch.alter_column("purpose", existing_type=sa.String(length=200), nullable=False)
        batch.alter_column("legal_basis", existing_type=sa.String(length=200), nullable=False)
        batch.alter_column("whole_case", existing_type=sa.Boolean(), nullable=False)
        batch.alter_column("watermark", existing_type=sa.Boolean(), nullable=False)
    op.create_table(
        "share_exhibits",
        sa.Column("share_id", sa.String(length=36), nullable=False),
        sa.Column("clip_id", sa.String(length=36), nullable=False),
        sa.Column("redacted_only", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["share_id"], ["shares.id"]),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"]),
        sa.PrimaryKeyConstraint("share_id", "clip_id"),
    )
    op.create_index("ix_share_exhibits_clip_id", "share_exhibits", ["clip_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_share_exhibits_clip_id", table_name="share_exhibits")
    op.drop_table("share_exhibits")
    # Shares with an organisation have no single recipient: they end with the downgrade.
    op.execute("DELETE FROM shares WHERE user_id IS NULL")
    with op.batch_alter_table("shares") as batch:
        batch.drop_constraint("fk_shares_organisation_id_organisations", type_="foreignkey")
        batch.drop_index("ix_shares_organisation_id")
        batch.alter_column("user_id", existing_type=sa.String(length=36), nullable=False)
        batch.drop_column("watermark")
        batch.drop_column("whole_case")
        batch.drop_column("legal_basis")
        batch.drop_column("purpose")
        batch.drop_column("organisation_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("fk_users_organisation_id_organisations", type_="foreignkey")
        batch.drop_index("ix_users_organisation_id")
        batch.drop_column("organisation_id")
    op.drop_table("organisations")
