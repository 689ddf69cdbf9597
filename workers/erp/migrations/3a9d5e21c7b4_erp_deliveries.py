"""erp_transfer tables: erp_deliveries (one row per record delivered to a target)

Revision ID: 3a9d5e21c7b4
Revises:
Create Date: 2026-12-02 16:00:00
"""
from alembic import op
import sqlalchemy as sa

from scheduler.jobkit import UTCDateTime


revision = '3a9d5e21c7b4'
down_revision = None
branch_labels = ('erp_transfer',)
depends_on = None


def upgrade() -> None:
    # Databases migrated before the type had its own tree have the table already (the billing tree made it).
    if sa.inspect(op.get_bind()).has_table('erp_deliveries'):
        return
    op.create_table(
        'erp_deliveries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('target_key', sa.String(length=64), nullable=False),
        sa.Column('dataset', sa.String(length=16), nullable=False),
        sa.Column('record_id', sa.BigInteger(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('batch_no', sa.Integer(), nullable=False),
        sa.Column('delivered_at', UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('target_key', 'dataset', 'record_id', name='uq_erp_deliveries_target_record'),
    )
    op.create_index('ix_erp_deliveries_run', 'erp_deliveries', ['run_id', 'batch_no'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_erp_deliveries_run', table_name='erp_deliveries')
    op.drop_table('erp_deliveries')
