"""runs: indexes on (state, lease_expires_at) and (state, deadline_at) for the lease sweep

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 03:00:00
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_state_lease_expires_at', ['state', 'lease_expires_at'], unique=False)
        batch_op.create_index('ix_runs_state_deadline_at', ['state', 'deadline_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_state_deadline_at')
        batch_op.drop_index('ix_runs_state_lease_expires_at')
