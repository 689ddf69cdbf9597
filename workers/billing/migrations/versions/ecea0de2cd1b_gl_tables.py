"""gl tables: gl_entries (the ledger)

It made gl_staged (a run's evaluated journal) too, until that table moved to the gl_collector job type's tree
(workers/gl/migrations), which creates it where this revision did not.

Revision ID: ecea0de2cd1b
Revises: d7ef4bf2617a
Create Date: 2026-11-27 12:00:00
"""
from alembic import op
import sqlalchemy as sa

import scheduler.db


revision = 'ecea0de2cd1b'
down_revision = 'd7ef4bf2617a'
branch_labels = ('gl',)
depends_on = None

# Bytewise comparisons of the ASCII source type codes on PostgreSQL (a cheaper unique index per line).
SOURCE_TYPE = sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'gl_entries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('source_type', SOURCE_TYPE, nullable=False),
        sa.Column('source_id', sa.BigInteger(), nullable=False),
        sa.Column('line_no', sa.SmallInteger(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('gl_account', sa.String(length=32), nullable=False),
        sa.Column('debit', sa.Numeric(precision=18, scale=2), server_default=sa.text('0'), nullable=False),
        sa.Column('credit', sa.Numeric(precision=18, scale=2), server_default=sa.text('0'), nullable=False),
        sa.Column('entry_date', sa.Date(), nullable=False),
        sa.Column('posted_at', scheduler.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source_type', 'source_id', 'line_no', name='uq_gl_entries_source_line'),
    )
    # BRIN on PostgreSQL (cheap to maintain while posting millions of lines; serves either column), b-tree on SQLite.
    op.create_index('ix_gl_entries_run_date', 'gl_entries', ['run_id', 'entry_date'], unique=False,
                    postgresql_using='brin')


def downgrade() -> None:
    op.drop_index('ix_gl_entries_run_date', table_name='gl_entries')
    op.drop_table('gl_entries')
