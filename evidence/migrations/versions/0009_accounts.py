"""accounts a force can run: unique officer ids, two-person approvals, enrolment links,
TOTP replay memory and recovery codes in the database

Revision ID: 0009
Revises: 0008

Officer ids become unique. Existing duplicates are NOT merged or renamed here: which of two
accounts sharing a collar number is the real officer is a decision for people, and either
guess would silently change who sees which clips. The upgrade stops instead, naming the
duplicates; disable or correct them (`UPDATE users SET officer_id = ...`) and run it again.
An empty officer id becomes NULL (it names nobody, and '' would match clips docked without
one). Grants already in force stay in force: they count as approved by their granter.
"""

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _refuse_duplicate_officer_ids() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("UPDATE users SET officer_id = NULL WHERE officer_id = ''"))
    rows = bind.execute(
        sa.text(
            "SELECT officer_id, COUNT(*) FROM users WHERE officer_id IS NOT NULL "
            "GROUP BY officer_id HAVING COUNT(*) > 1 ORDER BY officer_id"
        )
    ).all()
    if rows:
        names = ", ".join(f"{oid!r} ({n} accounts)" for oid, n in rows)
        raise RuntimeError(
            f"officer ids must be unique, but these are shared: {names}. Decide which account "
            "is the officer's, give the others another officer id or none "
            "(UPDATE users SET officer_id = NULL WHERE username = '...'), then upgrade again."
        )


def upgrade() -> None:
    _refuse_duplicate_officer_ids()
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_index("ix_users_officer_id")
        batch_op.create_index("ix_users_officer_id", ["officer_id"], unique=True)
    op.add_column(
        "users", sa.Column("approved", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.add_column("users", sa.Column("totp_pending", sa.String(length=64), nullable=True))
    op.add_column("users", sa.Column("password_changed_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("access_grants") as batch_op:
        batch_op.add_column(sa.Column("approved_by", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("approved_at", UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(
            "fk_access_grants_approved_by", "users", ["approved_by"], ["id"]
        )
    op.execute("UPDATE access_grants SET approved_by = granted_by, approved_at = created_at")

    op.create_table(
        "account_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("grant_id", sa.String(length=36), nullable=True),
        sa.Column("requested_by", sa.String(length=36), nullable=True),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["access_grants.id"],
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_account_requests_user_id", "account_requests", ["user_id"])
    op.create_index("ix_account_requests_state", "account_requests", ["state"])

    op.create_table(
        "enrolments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash", name="uq_enrolments_token_hash"),
    )
    op.create_index("ix_enrolments_user_id", "enrolments", ["user_id"])

    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash", name="uq_recovery_codes_code_hash"),
    )
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_recovery_codes_user_id", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_index("ix_enrolments_user_id", table_name="enrolments")
    op.drop_table("enrolments")
    op.drop_index("ix_account_requests_state", table_name="account_requests")
    op.drop_index("ix_account_requests_user_id", table_name="account_requests")
    op.drop_table("account_requests")
    with op.batch_alter_table("access_grants") as batch_op:
        batch_op.drop_constraint("fk_access_grants_approved_by", type_="foreignkey")
        batch_op.drop_column("approved_at")
        batch_op.drop_column("approved_by")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("password_changed_at")
        batch_op.drop_column("totp_pending")
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("approved")
        batch_op.drop_index("ix_users_officer_id")
        batch_op.create_index("ix_users_officer_id", ["officer_id"], unique=False)
