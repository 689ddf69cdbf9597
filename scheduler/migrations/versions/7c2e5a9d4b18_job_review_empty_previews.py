"""job.review_empty_previews: a preview with nothing to apply waits for review anyway (default: completes at once)

Revision ID: 7c2e5a9d4b18
Revises: 3f6a9c1d2e47
Create Date: 2026-12-02 16:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '7c2e5a9d4b18'
down_revision = '3f6a9c1d2e47'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('job', sa.Column('review_empty_previews', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('review_empty_previews')
