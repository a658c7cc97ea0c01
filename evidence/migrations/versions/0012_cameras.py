"""cameras: the camera register, assignments, clip attribution history and docked names

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

from evidence.types import UTCDateTime

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cameras',
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('make', sa.String(length=100), nullable=True),
    sa.Column('model', sa.String(length=100), nullable=True),
    sa.Column('firmware', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('registered_at', UTCDateTime(), nullable=False),
    sa.Column('registered_by', sa.String(length=120), nullable=False),
    sa.Column('first_seen_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('serial')
    )
    op.create_table('camera_assignments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('camera_serial', sa.String(length=64), nullable=False),
    sa.Column('officer_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('starts_at', UTCDateTime(), nullable=False),
    sa.Column('ends_at', UTCDateTime(), nullable=True),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    sa.Column('ended_by', sa.String(length=120), nullable=True),
    sa.ForeignKeyConstraint(['camera_serial'], ['cameras.serial'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_camera_assignments_camera_serial', 'camera_assignments', ['camera_serial'], unique=False)
    op.create_index('ix_camera_assignments_officer_id', 'camera_assignments', ['officer_id'], unique=False)
    op.create_table('clip_attributions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('clip_id', sa.String(length=36), nullable=False),
    sa.Column('camera_serial', sa.String(length=64), nullable=True),
    sa.Column('officer_id', sa.String(length=64), nullable=True),
    sa.Column('camera_how', sa.Text(), nullable=True),
    sa.Column('officer_how', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_clip_attributions_clip_id', 'clip_attributions', ['clip_id'], unique=False)
    op.create_table('clip_names',
    sa.Column('clip_id', sa.String(length=36), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('device_id', sa.String(length=36), nullable=True),
    sa.Column('first_docked_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['clip_id'], ['clips.id'], ),
    sa.PrimaryKeyConstraint('clip_id', 'filename')
    )
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('camera_how', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('officer_how', sa.Text(), nullable=True))
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.JSON(), nullable=True))
    # The names clips were docked under so far: each upload of a clip's bytes (the one that
    # made it and every twin declared later) names it. Earliest dock first per name.
    op.execute(
        "INSERT INTO clip_names (clip_id, filename, device_id, first_docked_at) "
        "SELECT c.id, u.filename, MIN(u.device_id), MIN(u.created_at) "
        "FROM uploads u JOIN clips c ON c.sha256 = u.sha256 "
        "WHERE u.state IN ('processing', 'stored', 'duplicate') "
        "GROUP BY c.id, u.filename"
    )


def downgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('clips', schema=None) as batch_op:
        batch_op.drop_column('officer_how')
        batch_op.drop_column('camera_how')
    op.drop_table('clip_names')
    op.drop_index('ix_clip_attributions_clip_id', table_name='clip_attributions')
    op.drop_table('clip_attributions')
    op.drop_index('ix_camera_assignments_officer_id', table_name='camera_assignments')
    op.drop_index('ix_camera_assignments_camera_serial', table_name='camera_assignments')
    op.drop_table('camera_assignments')
    op.drop_table('cameras')
