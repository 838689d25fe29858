"""read indexes: the newest result of a (model, device), run counts per job

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 03:00:00
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index('ix_results_model_device', ['model_id', 'device_id', 'id'], unique=False)
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_job_state', ['job_id', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_job_state')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_model_device')
