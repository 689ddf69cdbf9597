"""account currency: every account bills in one ISO 4217 currency (existing accounts: USD)

Revision ID: 2c9d4e1f7a60
Revises: 5b1e2c7d9a01
Create Date: 2026-12-02 15:40:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '2c9d4e1f7a60'
down_revision = '5b1e2c7d9a01'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('currency')
