"""tokens: the one-time role is spelt ``enroll`` (it was ``enrol``)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:00:00
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE tokens SET role = 'enroll' WHERE role = 'enrol'")


def downgrade() -> None:
    op.execute("UPDATE tokens SET role = 'enrol' WHERE role = 'enroll'")
