"""cases can be closed: exhibits of open (or still shared) cases are never disposed of

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(length=36), nullable=True))
        batch.create_foreign_key("fk_cases_closed_by_users", "users", ["closed_by"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_constraint("fk_cases_closed_by_users", type_="foreignkey")
        batch.drop_column("closed_by")
        batch.drop_column("closed_at")
