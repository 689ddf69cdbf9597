"""api_key: unique names, who created and revoked each key; api_session: server-side page sessions

Revision ID: 5b1e7c2d9a40
Revises: a41c7e2d9b10
Create Date: 2026-12-02 09:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

import scheduler.db


revision = '5b1e7c2d9a40'
down_revision = 'a41c7e2d9b10'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Names were not unique before: keep the oldest of each name, suffix the others with their id.
    op.execute(
        "UPDATE api_key SET name = SUBSTR(name, 1, 90) || '#' || CAST(id AS VARCHAR(10)) "
        "WHERE id NOT IN (SELECT MIN(id) FROM api_key GROUP BY name)"
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.alter_column('name', existing_type=sa.String(), type_=sa.String(length=100), existing_nullable=False)
        batch_op.add_column(sa.Column('created_by', sa.String(length=200), nullable=False, server_default='unknown'))
        batch_op.add_column(sa.Column('revoked_by', sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint('uq_api_key_name', ['name'])

    op.create_table('api_session',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('csrf_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', scheduler.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', scheduler.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', scheduler.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_key.id'], ),
    sa.PrimaryKeyConstraint('id_hash')
    )
    with op.batch_alter_table('api_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_session_key_id'), ['key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_session_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('api_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_session_expires_at'))
        batch_op.drop_index(batch_op.f('ix_api_session_key_id'))
    op.drop_table('api_session')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_constraint('uq_api_key_name', type_='unique')
        batch_op.drop_column('revoked_by')
        batch_op.drop_column('created_by')
        batch_op.alter_column('name', existing_type=sa.String(length=100), type_=sa.String(), existing_nullable=False)
