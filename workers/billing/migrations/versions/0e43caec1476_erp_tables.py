"""erp tables: erp_deliveries (one row per record delivered to a target)

Revision ID: 0e43caec1476
Revises: d7ef4bf2617a
Create Date: 2026-11-27 13:00:00
"""
from alembic import op
import sqlalchemy as sa

import scheduler.db


revision = '0e43caec1476'
down_revision = 'd7ef4bf2617a'
branch_labels = ('erp',)
depends_on = None


def upgrade() -> None:
    op.create_table(
        'erp_deliveries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('target_key', sa.String(length=64), nullable=False),
        sa.Column('dataset', sa.String(length=16), nullable=False),
        sa.Column('record_id', sa.BigInteger(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('batch_no', sa.Integer(), nullable=False),
        sa.Column('delivered_at', scheduler.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('target_key', 'dataset', 'record_id', name='uq_erp_deliveries_target_record'),
    )
    op.create_index('ix_erp_deliveries_run', 'erp_deliveries', ['run_id', 'batch_no'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_erp_deliveries_run', table_name='erp_deliveries')
    op.drop_table('erp_deliveries')
