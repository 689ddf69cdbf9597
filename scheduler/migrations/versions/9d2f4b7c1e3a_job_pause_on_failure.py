"""job.pause_on_failure: pause a job after N consecutive FAILED runs

Revision ID: 9d2f4b7c1e3a
Revises: c8e5376c6569
Create Date: 2026-11-28 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '9d2f4b7c1e3a'
down_revision = 'c8e5376c6569'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('job', sa.Column('pause_on_failure', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('pause_on_failure')
