"""refused_request: request_run messages the scheduler refused, with their reason, for operators

Revision ID: 3f6a9c1d2e47
Revises: 4b1e7d2a9c30
Create Date: 2026-12-10 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import scheduler.db


revision = '3f6a9c1d2e47'
down_revision = '4b1e7d2a9c30'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('refused_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', scheduler.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('job', sa.String(length=200), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_refused_request_received_at', 'refused_request', ['received_at'], unique=False)
    op.create_index('ix_refused_request_idempotency_key', 'refused_request', ['idempotency_key'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_refused_request_idempotency_key', table_name='refused_request')
    op.drop_index('ix_refused_request_received_at', table_name='refused_request')
    op.drop_table('refused_request')
