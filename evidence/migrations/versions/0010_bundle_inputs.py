"""bundle inputs: a request for the same exhibits and options reuses the bundle already made

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bundles", sa.Column("inputs_sha256", sa.String(length=64), nullable=True))
    op.create_index("ix_bundles_inputs_sha256", "bundles", ["inputs_sha256"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bundles_inputs_sha256", table_name="bundles")
    with op.batch_alter_table("bundles") as batch:
        batch.drop_column("inputs_sha256")
