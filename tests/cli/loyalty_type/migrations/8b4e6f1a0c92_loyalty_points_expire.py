"""loyalty points expire: loyalty_points.expires_on

Revision ID: 8b4e6f1a0c92
Revises: 1d0c2a7e5f31
Create Date: 2026-12-02 16:05:00
"""
import sqlalchemy as sa
from alembic import op

revision = '8b4e6f1a0c92'
down_revision = '1d0c2a7e5f31'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('loyalty_points', sa.Column('expires_on', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('loyalty_points') as batch:
        batch.drop_column('expires_on')
