"""gl_collector tables: gl_staged (a run's evaluated journal, until it is applied or deleted)

Revision ID: 9c4a1f7e2b65
Revises:
Create Date: 2026-12-02 16:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '9c4a1f7e2b65'
down_revision = None
branch_labels = ('gl_collector',)
depends_on = None

# Bytewise comparisons of the ASCII source type codes on PostgreSQL (as gl_entries).
SOURCE_TYPE = sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql')


def upgrade() -> None:
    # Databases migrated before the type had its own tree have the table already (the billing tree made it).
    if sa.inspect(op.get_bind()).has_table('gl_staged'):
        return
    op.create_table(
        'gl_staged',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('source_type', SOURCE_TYPE, nullable=False),
        sa.Column('source_id', sa.BigInteger(), nullable=False),
        sa.Column('line_no', sa.SmallInteger(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('gl_account', sa.String(length=32), nullable=False),
        sa.Column('debit', sa.Numeric(precision=18, scale=2), server_default=sa.text('0'), nullable=False),
        sa.Column('credit', sa.Numeric(precision=18, scale=2), server_default=sa.text('0'), nullable=False),
        sa.Column('entry_date', sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint('run_id', 'source_type', 'source_id', 'line_no', name='pk_gl_staged'),
    )


def downgrade() -> None:
    op.drop_table('gl_staged')
