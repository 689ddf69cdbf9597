"""usage_mediation tables: usage_files, usage_events, usage_daily, usage_rejects

Revision ID: 6e2b8f40d1a3
Revises:
Create Date: 2026-12-02 16:00:00
"""
from alembic import op
import sqlalchemy as sa

from scheduler.jobkit import UTCDateTime


revision = '6e2b8f40d1a3'
down_revision = None
branch_labels = ('usage_mediation',)
depends_on = None


def upgrade() -> None:
    # Databases migrated before the type had its own tree have the tables already (the billing tree made them).
    if sa.inspect(op.get_bind()).has_table('usage_files'):
        return
    op.create_table(
        'usage_files',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('checksum', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=500), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('format', sa.String(length=8), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('records', sa.Integer(), nullable=False),
        sa.Column('mediated', sa.Integer(), nullable=False),
        sa.Column('filtered', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('amount', sa.Numeric(precision=28, scale=6), nullable=False),
        sa.Column('processed_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('archived_as', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('checksum'),
    )
    op.create_index('ix_usage_files_run', 'usage_files', ['run_id'], unique=False)

    op.create_table(
        'usage_events',
        sa.Column('event_id', sa.String(length=100).with_variant(sa.String(length=100, collation='C'), 'postgresql'),
                  nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('meter', sa.String(length=64), nullable=False),
        sa.Column('quantity', sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column('amount', sa.Numeric(precision=24, scale=6), nullable=False),
        sa.Column('occurred_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('usage_day', sa.Date(), nullable=False),
        sa.Column('file_id', sa.Integer(), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
    )

    op.create_table(
        'usage_daily',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('meter', sa.String(length=64), nullable=False),
        sa.Column('usage_day', sa.Date(), nullable=False),
        sa.Column('events', sa.Integer(), nullable=False),
        sa.Column('quantity', sa.Numeric(precision=28, scale=6), nullable=False),
        sa.Column('amount', sa.Numeric(precision=28, scale=6), nullable=False),
        sa.PrimaryKeyConstraint('account_id', 'meter', 'usage_day'),
    )

    op.create_table(
        'usage_rejects',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('file_id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=100), nullable=True),
        sa.Column('account_number', sa.String(length=64), nullable=True),
        sa.Column('meter', sa.String(length=64), nullable=True),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('message', sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(['file_id'], ['usage_files.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('file_id', 'line_no', name='uq_usage_reject_file_line'),
    )
    op.create_index('ix_usage_rejects_run', 'usage_rejects', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_usage_rejects_run', table_name='usage_rejects')
    op.drop_table('usage_rejects')
    op.drop_table('usage_daily')
    op.drop_table('usage_events')
    op.drop_index('ix_usage_files_run', table_name='usage_files')
    op.drop_table('usage_files')
