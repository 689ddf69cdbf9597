"""job_run.request_id: the id of the API request that created a run, for its log lines

Revision ID: a41c7e2d9b10
Revises: 9d2f4b7c1e3a
Create Date: 2026-12-02 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = 'a41c7e2d9b10'
down_revision = '9d2f4b7c1e3a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('job_run', sa.Column('request_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_column('request_id')
