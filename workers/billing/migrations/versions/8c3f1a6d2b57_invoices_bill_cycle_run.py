"""invoices by bill cycle run: invoices.bill_cycle_run_id (the ERP transfer exports one bill cycle's records)

Revision ID: 8c3f1a6d2b57
Revises: 0e43caec1476
Create Date: 2026-11-27 08:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '8c3f1a6d2b57'
down_revision = '0e43caec1476'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bill_cycle_run_id', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_invoices_bill_cycle_run', ['bill_cycle_run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_invoices_bill_cycle_run')
        batch_op.drop_column('bill_cycle_run_id')
