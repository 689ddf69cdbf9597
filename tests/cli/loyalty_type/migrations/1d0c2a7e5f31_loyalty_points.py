"""loyalty tables: loyalty_points

Revision ID: 1d0c2a7e5f31
Revises:
Create Date: 2026-12-02 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '1d0c2a7e5f31'
down_revision = None
branch_labels = ('loyalty',)
depends_on = None


def upgrade() -> None:
    op.create_table(
        'loyalty_points',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('account_id'),
    )


def downgrade() -> None:
    op.drop_table('loyalty_points')
