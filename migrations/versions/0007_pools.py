"""device pools: jobs placed on any one device of a pool, runs whose device is set at claim

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 05:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placement', sa.String(length=8), server_default='each', nullable=False))
        batch_op.add_column(sa.Column('repeat', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pooled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.alter_column('device_id', existing_type=sa.Integer(), nullable=True)
    op.create_table(
        'job_pool_devices',
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('device_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'device_id'),
    )
    with op.batch_alter_table('job_pool_devices', schema=None) as batch_op:
        batch_op.create_index('ix_job_pool_devices_device', ['device_id', 'job_id'], unique=False)


def downgrade() -> None:
    """Back to fixed devices: pool runs no device took are dropped with the pools."""
    with op.batch_alter_table('job_pool_devices', schema=None) as batch_op:
        batch_op.drop_index('ix_job_pool_devices_device')
    op.drop_table('job_pool_devices')
    op.execute("DELETE FROM runs WHERE device_id IS NULL")
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.alter_column('device_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('pooled')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('repeat')
        batch_op.drop_column('placement')
