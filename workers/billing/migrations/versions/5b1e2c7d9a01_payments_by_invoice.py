"""payments by invoice: index payments.invoice_id (an invoice's payments are checked when it changes)

Revision ID: 5b1e2c7d9a01
Revises: d7ef4bf2617a
Create Date: 2026-11-27 04:00:00.000000
"""
from alembic import op


revision = '5b1e2c7d9a01'
down_revision = 'd7ef4bf2617a'
branch_labels = ('dunning',)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_invoice', ['invoice_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_invoice')
