"""cameras: the camera register, assignments, clip attribution history and docked names

Revision ID: 0012
Revises: 0011
"""

import uuid

import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("make", sa.String(length=100), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("registered_at", UTCDateTime(), nullable=False),
        sa.Column("registered_by", sa.String(length=120), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_table(
        "camera_assignments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("camera_serial", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["camera_serial"],
            ["cameras.serial"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_camera_assignments_camera_serial", "camera_assignments", ["camera_serial"], unique=False
    )
    op.create_index(
        "ix_camera_assignments_officer_id", "camera_assignments", ["officer_id"], unique=False
    )
    op.create_table(
        "clip_attributions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("clip_id", sa.String(length=36), nullable=False),
        sa.Column("camera_serial", sa.String(length=64), nullable=True),
        sa.Column("officer_id", sa.String(length=64), nullable=True),
        sa.Column("camera_how", sa.Text(), nullable=True),
        sa.Column("officer_how", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_clip_attributions_clip_id", "clip_attributions", ["clip_id"], unique=False)
    op.create_table(
        "clip_names",
        sa.Column("clip_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("first_docked_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.PrimaryKeyConstraint("clip_id", "filename"),
    )
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("camera_how", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("officer_how", sa.Text(), nullable=True))
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.JSON(), nullable=True))
    _attributions_so_far()
    # The names clips were docked under so far: each upload of a clip's bytes (the one that
    # made it and every twin declared later) names it. Earliest dock first per name.
    op.execute(
        "INSERT INTO clip_names (clip_id, filename, device_id, first_docked_at) "
        "SELECT c.id, u.filename, MIN(u.device_id), MIN(u.created_at) "
        "FROM uploads u JOIN clips c ON c.sha256 = u.sha256 "
        "WHERE u.state IN ('processing', 'stored', 'duplicate') "
        "GROUP BY c.id, u.filename"
    )


def _attributions_so_far() -> None:
    """Before the register, a clip's camera and officer came from its sidecar alone, and the
    ingest worker recorded them in `clip.ingested`: say so on each ingested clip, and make
    that its first attribution row (as the worker, at its ingest time), so every clip's
    history starts at ingest."""
    clips = sa.table(
        "clips",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("camera_serial", sa.String),
        sa.column("officer_id", sa.String),
        sa.column("camera_how", sa.Text),
        sa.column("officer_how", sa.Text),
        sa.column("ingested_at", UTCDateTime()),
    )
    history = sa.table(
        "clip_attributions",
        sa.column("id", sa.String),
        sa.column("clip_id", sa.String),
        sa.column("camera_serial", sa.String),
        sa.column("officer_id", sa.String),
        sa.column("camera_how", sa.Text),
        sa.column("officer_how", sa.Text),
        sa.column("actor", sa.String),
        sa.column("reason", sa.Text),
        sa.column("at", UTCDateTime()),
    )
    ingested = clips.c.state.in_(["stored", "ready", "unplayable", "disposed"])
    op.execute(
        clips.update()
        .where(ingested, clips.c.camera_serial.is_not(None))
        .values(camera_how="sidecar")
    )
    op.execute(
        clips.update()
        .where(ingested, clips.c.officer_id.is_not(None))
        .values(officer_how="sidecar")
    )
    conn = op.get_bind()
    result = conn.execute(
        sa.select(clips.c.id, clips.c.camera_serial, clips.c.officer_id, clips.c.ingested_at).where(
            ingested
        )
    )
    while batch := result.fetchmany(1000):
        conn.execute(
            history.insert(),
            [
                {
                    "id": str(uuid.uuid4()),
                    "clip_id": r.id,
                    "camera_serial": r.camera_serial,
                    "officer_id": r.officer_id,
                    "camera_how": "sidecar" if r.camera_serial else None,
                    "officer_how": "sidecar" if r.officer_id else None,
                    "actor": "system:worker",
                    "reason": None,
                    "at": r.ingested_at,
                }
                for r in batch
            ],
        )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+ has it for such columns): batch mode would rebuild
    # clips by dropping it, which SQLite's foreign keys refuse while uploads point at it.
    op.drop_column("uploads", "source")
    op.drop_column("clips", "officer_how")
    op.drop_column("clips", "camera_how")
    op.drop_table("clip_names")
    op.drop_index("ix_clip_attributions_clip_id", table_name="clip_attributions")
    op.drop_table("clip_attributions")
    op.drop_index("ix_camera_assignments_officer_id", table_name="camera_assignments")
    op.drop_index("ix_camera_assignments_camera_serial", table_name="camera_assignments")
    op.drop_table("camera_assignments")
    op.drop_table("cameras")
