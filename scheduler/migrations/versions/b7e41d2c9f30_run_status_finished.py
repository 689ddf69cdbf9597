"""job_run (status, finished_at) index: the beat leader reads the runs completed since its last reading

Revision ID: b7e41d2c9f30
Revises: 5b1e7c2d9a40
Create Date: 2026-12-02 12:00:00.000000
"""
from alembic import op


revision = 'b7e41d2c9f30'
down_revision = '5b1e7c2d9a40'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_run_status_finished', 'job_run', ['status', 'finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_run_status_finished', table_name='job_run')
